"""schemathesis hooks for `cargo xtask fuzz-api` (loaded through SCHEMATHESIS_HOOKS).

What a fuzzer cannot know from the document alone, and what would make the run dishonest if
left to chance (docs/security.md, "API fuzzing (schemathesis)"):

- Bearer tokens. Every operation with the `BearerToken` scheme gets the real token of the user
  `o-fuzz` that the xtask minted (a mock `wx.login` code exchanged at `/api/v1/login`). The three operations that end the token they are sent with
  (`POST /api/v1/session/refresh`, `DELETE /api/v1/session`, `DELETE /api/v1/me`) get a fresh
  token of another user (`o-fuzz-spare`) on every call instead, so they run as often as the
  others and cannot end the token the rest of the run uses.
- Operators. The `OperatorAuth` (HTTP Basic) operations get the operator the xtask configured.
- `wx.login` codes. A code is a credential WeChat issues; no schema can say "issued by WeChat".
  Positive cases of the code exchanges (`POST /onLogin`, `POST /api/v1/login`) get a real,
  fresh code from the mock WeChat's control API in place of the generated one, so their
  success path (and its response schema) is what is tested. Negative cases keep what was
  generated.

The server's base URL and the operator come from the environment the xtask sets.
"""

import base64
import os
import threading

import requests
import schemathesis

BASE = os.environ["WXLOGIN_FUZZ_URL"].rstrip("/")
OPERATOR = (os.environ["WXLOGIN_FUZZ_OPERATOR"], os.environ["WXLOGIN_FUZZ_PASSWORD"])

# Operations that end the token they carry.
TOKEN_ENDING = {
    ("POST", "/api/v1/session/refresh"),
    ("DELETE", "/api/v1/session"),
    ("DELETE", "/api/v1/me"),
}
CODE_EXCHANGES = {("POST", "/onLogin"), ("POST", "/api/v1/login")}

_session = requests.Session()
_lock = threading.Lock()
_shared_token = os.environ.get("WXLOGIN_FUZZ_TOKEN")


def _mint_code(open_id):
    r = _session.post(f"{BASE}/mock/codes", json={"openId": open_id}, timeout=10)
    r.raise_for_status()
    return r.json()["code"]


def _login(open_id):
    r = _session.post(f"{BASE}/api/v1/login", json={"code": _mint_code(open_id)}, timeout=10)
    r.raise_for_status()
    return r.json()["token"]


def _key(case):
    return (case.operation.method.upper(), case.operation.path)


@schemathesis.auth(refresh_interval=None).apply_to(
    path_regex=r"^/api/v1/(me|session)"
)
class Bearer:
    def get(self, case, ctx):
        global _shared_token
        if _key(case) in TOKEN_ENDING:
            return _login("o-fuzz-spare")
        with _lock:
            if _shared_token is None:
                _shared_token = _login("o-fuzz")
            return _shared_token

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.auth(refresh_interval=None).apply_to(path_regex=r"^/admin/v1/")
class Operator:
    def get(self, case, ctx):
        return base64.b64encode(f"{OPERATOR[0]}:{OPERATOR[1]}".encode()).decode()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Basic {data}"


@schemathesis.hook
def before_call(context, case, kwargs):
    if _key(case) not in CODE_EXCHANGES:
        return
    if case.meta is None or str(case.meta.generation.mode) != "positive":
        return
    if isinstance(case.body, dict) and isinstance(case.body.get("code"), str):
        case.body["code"] = _mint_code("o-fuzz-login")
