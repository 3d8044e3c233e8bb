"""Choose MuJoCo's headless OpenGL backend (``MUJOCO_GL``) before dm_control is imported.

dm_control reads ``MUJOCO_GL`` once, when it is first imported, and cannot switch afterwards, so
the choice is made here, once per process: a ``MUJOCO_GL`` the user set is kept; otherwise EGL if
it can create an OpenGL context, else OSMesa (slower) with a message, else a `TaskError` that
says what to install. The probes talk to libEGL / libOSMesa through ctypes (a few milliseconds)
and never import PyOpenGL, whose platform would otherwise be locked to the probed backend.
Worker processes inherit the chosen ``MUJOCO_GL`` and skip the probe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from types import ModuleType

from ..errors import TaskError

EGL_FIX = "apt-get install libegl1 libgl1-mesa-dri (EGL)"
OSMESA_FIX = "apt-get install libosmesa6, then MUJOCO_GL=osmesa"
GL_FIX = f"install headless OpenGL: {EGL_FIX}, or {OSMESA_FIX}"

# EGL constants (EGL 1.5 and EGL_EXT_platform_device); ctypes needs them spelled out.
_EGL_SUCCESS, _EGL_NONE, _EGL_PLATFORM_DEVICE = 0x3000, 0x3038, 0x313F
_EGL_OPENGL_API, _EGL_SURFACE_TYPE, _EGL_PBUFFER_BIT = 0x30A2, 0x3033, 0x0001
_EGL_RENDERABLE_TYPE, _EGL_OPENGL_BIT, _EGL_DEPTH_SIZE = 0x3040, 0x0008, 0x3025
_EGL_RED, _EGL_GREEN, _EGL_BLUE = 0x3024, 0x3023, 0x3022
_OSMESA_RGBA = 0x1908

_probed: str | None = None


def _load(name: str) -> ctypes.CDLL | None:
    path = ctypes.util.find_library(name)
    try:
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None


def _egl_display(egl: ctypes.CDLL) -> int | None:
    """An initialized EGL display on some device (as dm_control picks it), or None."""
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    get_display = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not query or not get_display:
        return None
    query_devices = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.POINTER(ctypes.c_int))(query)
    platform_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p,
                                        ctypes.c_void_p)(get_display)
    devices, count = (ctypes.c_void_p * 8)(), ctypes.c_int(0)
    if not query_devices(8, devices, ctypes.byref(count)):
        return None
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    for device in devices[:count.value]:
        display = platform_display(_EGL_PLATFORM_DEVICE, device, None)
        if display and egl.eglInitialize(display, None, None):
            return display
    return None


def egl_works() -> bool:
    """Can EGL create and bind a desktop-OpenGL context (what MuJoCo renders with)?"""
    egl = _load("EGL")
    if egl is None or not (ctypes.util.find_library("OpenGL") or ctypes.util.find_library("GL")):
        return False
    display = _egl_display(egl)
    if display is None:
        return False
    vp = ctypes.c_void_p
    for fn, args in (("eglChooseConfig", [vp, vp, vp, ctypes.c_int, vp]), ("eglTerminate", [vp]),
                     ("eglCreateContext", [vp, vp, vp, vp]), ("eglDestroyContext", [vp, vp]),
                     ("eglMakeCurrent", [vp, vp, vp, vp])):
        getattr(egl, fn).argtypes = args
    egl.eglCreateContext.restype = vp
    try:
        attributes = (ctypes.c_int * 13)(_EGL_RED, 8, _EGL_GREEN, 8, _EGL_BLUE, 8, _EGL_DEPTH_SIZE,
                                         24, _EGL_SURFACE_TYPE, _EGL_PBUFFER_BIT,
                                         _EGL_RENDERABLE_TYPE, _EGL_OPENGL_BIT, _EGL_NONE)
        config, found = ctypes.c_void_p(), ctypes.c_int(0)
        if not (egl.eglChooseConfig(display, attributes, ctypes.byref(config), 1,
                                    ctypes.byref(found)) and found.value):
            return False
        if not egl.eglBindAPI(_EGL_OPENGL_API):
            return False
        context = egl.eglCreateContext(display, config, None, None)
        if not context:
            return False
        current = egl.eglMakeCurrent(display, None, None, context)  # surfaceless, as MuJoCo's
        egl.eglMakeCurrent(display, None, None, None)
        egl.eglDestroyContext(display, context)
        return bool(current)
    finally:
        egl.eglTerminate(display)  # dm_control initializes the display again


def osmesa_works() -> bool:
    """Can OSMesa create a software OpenGL context?"""
    osmesa = _load("OSMesa")
    if osmesa is None:
        return False
    osmesa.OSMesaCreateContextExt.restype = ctypes.c_void_p
    osmesa.OSMesaCreateContextExt.argtypes = [ctypes.c_uint, ctypes.c_int, ctypes.c_int,
                                              ctypes.c_int, ctypes.c_void_p]
    osmesa.OSMesaDestroyContext.argtypes = [ctypes.c_void_p]
    context = osmesa.OSMesaCreateContextExt(_OSMESA_RGBA, 24, 8, 0, None)
    if not context:
        return False
    osmesa.OSMesaDestroyContext(context)
    return True


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL`` (once per process) to a backend that can render; return it."""
    global _probed
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]  # the user's choice, or the parent process's probe
    render = sys.modules.get("dm_control._render")
    if render is not None:  # dm_control was imported first and chose for itself: too late
        return str(getattr(render, "BACKEND", None) or "none")
    if _probed is None:
        if egl_works():
            _probed = "egl"
        elif osmesa_works():
            _probed = "osmesa"
            logging.getLogger(__name__).warning(
                "EGL cannot render here, using OSMesa (slower); for EGL: %s", EGL_FIX)
        else:
            raise TaskError(f"no headless OpenGL for MuJoCo (EGL and OSMesa both failed); {GL_FIX}")
    os.environ["MUJOCO_GL"] = _probed
    return _probed


def import_suite() -> ModuleType:
    """``dm_control.suite``, imported after the backend is chosen; GL failures become TaskErrors."""
    backend = select_gl_backend()
    try:
        from dm_control import suite
    except Exception as exc:  # noqa: BLE001 -- dm_control._render opens GL on import, and
        # PyOpenGL fails in many ways (ImportError, RuntimeError, AttributeError) without it
        fix = {"egl": f"{EGL_FIX}, or {OSMESA_FIX}", "osmesa": f"{OSMESA_FIX}, or unset MUJOCO_GL"}
        raise TaskError(f"dm_control cannot start OpenGL with MUJOCO_GL={backend} "
                        f"({type(exc).__name__}: {' '.join(str(exc).split())}); "
                        f"{fix.get(backend, 'set MUJOCO_GL=egl or MUJOCO_GL=osmesa')}") from None
    return suite
