"""Finding and loading libmltuner.so, and the C declarations (client/mltuner.h).

The library is looked for, in order:
  1. MLTUNER_LIB: the .so itself, or a folder holding libmltuner.so;
  2. a build folder: $MLT_BUILD_ROOT/client (set by meson test), then
     build/client/ in this package's folder or any folder above it (the
     source tree: python/mltuner -> build/client/libmltuner.so);
  3. the system's (ctypes.util.find_library, i.e. ldconfig's cache).
Structures here mirror the header field for field; keep them in step with it.
"""

import ctypes
import ctypes.util
import os

_LIB_NAME = "libmltuner.so"


class LibraryNotFound(OSError):
    """libmltuner.so was not found; the message lists where it was looked for."""


def _candidates():
    env = os.environ.get("MLTUNER_LIB")
    if env:
        yield os.path.join(env, _LIB_NAME) if os.path.isdir(env) else env
        return  # an explicit choice: nothing else
    root = os.environ.get("MLT_BUILD_ROOT")
    if root:
        yield os.path.join(root, "client", _LIB_NAME)
    d = os.path.dirname(os.path.abspath(__file__))
    while True:
        yield os.path.join(d, "build", "client", _LIB_NAME)
        up = os.path.dirname(d)
        if up == d:
            break
        d = up
    sys_name = ctypes.util.find_library("mltuner")
    if sys_name:
        yield sys_name


def _load():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path + " (missing)")
            continue
        try:
            return ctypes.CDLL(path, use_errno=True), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise LibraryNotFound(
        "libmltuner.so not found; set MLTUNER_LIB to the library or its folder, "
        "build the tree (build/client/libmltuner.so) or install it. Tried: "
        + ("; ".join(tried) if tried else "MLTUNER_LIB, build folders, the system's")
    )


# ---- the header's types --------------------------------------------------------

c_float_p = ctypes.POINTER(ctypes.c_float)


class TableDef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("size", ctypes.c_uint64)]


class JobDef(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("n_workers", ctypes.c_uint32),
        ("rule", ctypes.c_char_p),
        ("tables", ctypes.POINTER(TableDef)),
        ("n_tables", ctypes.c_uint32),
        ("average", ctypes.c_bool),
    ]


class TunablesDef(ctypes.Structure):
    _fields_ = [
        ("lr", ctypes.c_float),
        ("momentum", ctypes.c_float),
        ("weight_decay", ctypes.c_float),
        ("beta1", ctypes.c_float),
        ("beta2", ctypes.c_float),
        ("eps", ctypes.c_float),
        ("staleness", ctypes.c_int32),
        ("warmup", ctypes.c_int32),
    ]


class BranchStatus(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("parent", ctypes.c_int64),
        ("kind", ctypes.c_int),
        ("min_clock", ctypes.c_int64),
        ("owned_bytes", ctypes.c_uint64),
        ("shared_bytes", ctypes.c_uint64),
        ("diverged", ctypes.c_bool),
        ("tunables", TunablesDef),
    ]


class ServerStatus(ctypes.Structure):
    _fields_ = [
        ("rank", ctypes.c_uint32),
        ("n_servers", ctypes.c_uint32),
        ("chunk_floats", ctypes.c_uint32),
        ("memory_limit", ctypes.c_uint64),
        ("memory_potential", ctypes.c_uint64),
        ("memory_allocated", ctypes.c_uint64),
        ("requests", ctypes.c_uint64),
        ("errors", ctypes.c_uint64),
        ("pulls", ctypes.c_uint64),
        ("pushes", ctypes.c_uint64),
        ("bytes_in", ctypes.c_uint64),
        ("bytes_out", ctypes.c_uint64),
        ("parked", ctypes.c_uint32),
        ("job", ctypes.c_char * 129),
        ("n_branches", ctypes.c_uint32),
        ("branches", ctypes.POINTER(BranchStatus)),
    ]


class ClientKeys(ctypes.Structure):
    _fields_ = [
        ("public_key", ctypes.c_char * 41),
        ("secret_key", ctypes.c_char * 41),
        ("server_key", ctypes.c_char * 41),
    ]


class SessionOpts(ctypes.Structure):
    _fields_ = [
        ("coordinator", ctypes.c_char_p),
        ("rank", ctypes.c_uint32),
        ("program", ctypes.c_char_p),
        ("backends", ctypes.c_char_p),
        ("threads", ctypes.c_uint32),
        ("keys", ctypes.POINTER(ClientKeys)),
        ("timeout_s", ctypes.c_double),
        ("on_event", ctypes.c_void_p),  # an EVENT_FN (kept alive by the Session)
        ("event_arg", ctypes.c_void_p),
    ]


# void (*on_event)(void *arg, const char *what)
EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class TaskStruct(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),  # mlt_task_kind_t, an enum (int-sized)
        ("id", ctypes.c_uint64),
        ("branch", ctypes.c_uint32),
        ("clock_start", ctypes.c_int64),
        ("clocks", ctypes.c_int64),
        ("batch_size", ctypes.c_uint32),
        ("seek", ctypes.c_bool),
        ("data_epoch", ctypes.c_double),
        ("share", ctypes.c_uint32),
        ("share_count", ctypes.c_uint32),
        ("job_name", ctypes.c_char_p),
        ("job_text", ctypes.c_char_p),
        ("model", ctypes.c_char_p),
        ("n_workers", ctypes.c_uint32),
        ("seed", ctypes.c_uint64),
        ("reason", ctypes.c_char_p),
    ]


class EvalSums(ctypes.Structure):
    _fields_ = [
        ("loss", ctypes.c_double),
        ("correct", ctypes.c_uint64),
        ("count", ctypes.c_uint64),
        ("sq_error", ctypes.c_double),
    ]


_P = ctypes.c_void_p  # mlt_client_t *, mlt_session_t *: opaque
_I, _U32, _I64, _U64 = ctypes.c_int, ctypes.c_uint32, ctypes.c_int64, ctypes.c_uint64
_S, _SZ, _D, _B = ctypes.c_char_p, ctypes.c_size_t, ctypes.c_double, ctypes.c_bool

# name: (restype, argtypes); the session part is optional (a library older
# than #13 lacks it: mltuner.Session then says so)
_FUNCS = {
    "mlt_tunables_unset": (TunablesDef, []),
    "mlt_client_new": (_P, [ctypes.POINTER(_S), _U32, _U32, ctypes.c_char_p, _SZ]),
    "mlt_client_new_keys": (
        _P,
        [ctypes.POINTER(_S), _U32, _U32, ctypes.POINTER(ClientKeys), ctypes.c_char_p, _SZ],
    ),
    "mlt_client_destroy": (None, [ctypes.POINTER(_P)]),
    "mlt_client_error": (_S, [_P]),
    "mlt_client_set_timeout": (None, [_P, _D]),
    "mlt_client_register": (_I, [_P, ctypes.POINTER(JobDef)]),
    "mlt_client_n_tables": (_U32, [_P]),
    "mlt_client_table_size": (_U64, [_P, _U32]),
    "mlt_branch_create": (_I, [_P, _U32, _I, ctypes.POINTER(TunablesDef)]),
    "mlt_branch_fork": (_I, [_P, _U32, _U32, _I, ctypes.POINTER(TunablesDef)]),
    "mlt_branch_free": (_I, [_P, _U32]),
    "mlt_branch_set_tunables": (_I, [_P, _U32, ctypes.POINTER(TunablesDef)]),
    "mlt_write": (_I, [_P, _U32, _U32, _P]),
    "mlt_pull": (_I, [_P, _U32, _I64, ctypes.POINTER(_P)]),
    "mlt_pull_min_clock": (_I64, [_P, _U32]),
    "mlt_pull_prefetched": (_U64, [_P]),
    "mlt_client_keep_dst": (None, [_P, _B]),
    "mlt_client_forget_dst": (None, [_P]),
    "mlt_pull_copies_skipped": (_U64, [_P]),
    "mlt_client_transport": (_S, [_P]),
    "mlt_push": (_I, [_P, _U32, _U32, _P]),
    "mlt_clock": (_I, [_P, _U32, _I64]),
    "mlt_sync": (_I, [_P]),
    "mlt_client_status": (_I, [_P, _U32, ctypes.POINTER(ServerStatus)]),
    "mlt_server_status_free": (None, [ctypes.POINTER(ServerStatus)]),
    "mlt_client_job_end": (_I, [_P]),
}
_SESSION_FUNCS = {
    "mlt_session_join": (_P, [ctypes.POINTER(SessionOpts), ctypes.c_char_p, _SZ]),
    "mlt_session_next": (_I, [_P, _D, ctypes.POINTER(TaskStruct)]),
    "mlt_session_load": (_I, [_P, ctypes.POINTER(TableDef), _U32, _U64, _U64]),
    "mlt_session_client": (_P, [_P]),
    "mlt_session_report_clock": (_I, [_P, _I64, _D, _U64, _U64, _D]),
    "mlt_session_report_test": (_I, [_P, ctypes.POINTER(EvalSums), ctypes.POINTER(EvalSums)]),
    "mlt_session_done": (_I, [_P, _D]),
    "mlt_session_fail": (_I, [_P, _S]),
    "mlt_session_error": (_S, [_P]),
    "mlt_session_leave": (_I, [_P]),
    "mlt_session_destroy": (None, [ctypes.POINTER(_P)]),
}


class _Lib:
    """The loaded library with its prototypes set; `has_session` says whether
    it has the worker session (#13)."""

    def __init__(self):
        self.dll, self.path = _load()
        for name, (res, args) in _FUNCS.items():
            f = getattr(self.dll, name)
            f.restype, f.argtypes = res, args
        self.has_session = True
        for name, (res, args) in _SESSION_FUNCS.items():
            f = getattr(self.dll, name, None)
            if f is None:
                self.has_session = False
                continue
            f.restype, f.argtypes = res, args

    def __getattr__(self, name):
        return getattr(self.dll, name)


_lib = None


def lib():
    """The library, loaded on first use (importing mltuner loads nothing)."""
    global _lib
    if _lib is None:
        _lib = _Lib()
    return _lib
