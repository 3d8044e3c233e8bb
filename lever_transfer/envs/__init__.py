"""Pixel environments: DeepMind Control behind gymnasium's API (no torch imported here)."""

from .dmc import DMCEnv, list_tasks, make_env, parse_task, select_gl_backend
from .worker import EnvWorker

__all__ = ["DMCEnv", "EnvWorker", "list_tasks", "make_env", "parse_task", "select_gl_backend"]
