"""Pixel environments: DeepMind Control behind gymnasium's API (no torch imported here).

Importing this package does not import dm_control: the OpenGL backend must be chosen first
(`select_gl_backend`), and that happens when the first task is parsed or environment made.
"""

from .dmc import DMCEnv, EnvWorker, list_tasks, make_env, parse_task
from .rendering import select_gl_backend

__all__ = ["DMCEnv", "EnvWorker", "list_tasks", "make_env", "parse_task", "select_gl_backend"]
