"""A fake forge for the tests and benchmarks: GitHub, GitLab and Gitea REST shapes on 127.0.0.1.

One threaded HTTP server speaks all three dialects under their own path prefix, so each client's
``api_url`` is ``<url>/github``, ``<url>/gitlab/api/v4`` or ``<url>/gitea/api/v1``. It keeps pull requests
per repository (number, head, base, title, body, labels, reviewers, draft, state, comments), answers with
the status codes and error bodies each forge documents (401 on a wrong token, 404 for an unknown repository,
GitHub 422 / GitLab 409 / Gitea 409 for a second open pull request of one head), pages listings with a
small configurable page size (``Link`` headers; GitLab also ``X-Next-Page``), logs every request, and can
be told to answer the next requests with a status and headers (``fail_next``) or to hang for a bounded
time (``hang_next``). Bound to 127.0.0.1 only; stopped by ``stop()`` or leaving the ``with`` block.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

__all__ = ["FakeForge", "Fault", "Logged", "StoredPR"]

_REASONS = {200: "OK", 201: "Created", 204: "No Content", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class StoredPR:
    number: int
    head: str
    base: str
    title: str
    body: str
    draft: bool = False
    state: str = "open"  # open | closed
    labels: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    head_repo: str | None = None  # a fork's full name; None: the repository itself


@dataclass(frozen=True)
class Logged:
    method: str
    dialect: str
    path: str  # below the dialect's API root, decoded
    query: dict[str, str]
    status: int

    @property
    def write(self) -> bool:
        return self.method != "GET"


@dataclass
class Fault:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    count: int


@dataclass
class _Repo:
    prs: dict[int, StoredPR] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # Gitea: name -> id
    next_number: int = 1


class FakeForge:
    """The fake forge; ``add_repo(dialect, path)`` before a client talks to it."""

    def __init__(self, *, token: str = "forge-token-test-only", page_size: int = 30) -> None:
        self.token = token
        self.page_size = page_size
        self.users = {"alice": 11, "bob": 12}  # GitLab user ids
        self.log: list[Logged] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._faults: list[Fault] = []
        self._hang = 0.0
        self._hang_count = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ----------------------------------------------------------------------------------------------

    def add_repo(self, dialect: str, path: str, *, labels: tuple[str, ...] = ()) -> None:
        repo = self._repos.setdefault((dialect, path), _Repo())
        for name in labels:
            repo.labels.setdefault(name, 100 + len(repo.labels))

    def prs(self, dialect: str, path: str) -> list[StoredPR]:
        return list(self._repos[(dialect, path)].prs.values())

    def add_pr(self, dialect: str, path: str, **fields: Any) -> StoredPR:
        repo = self._repos[(dialect, path)]
        with self._lock:
            pr = StoredPR(number=repo.next_number, **fields)
            repo.prs[pr.number] = pr
            repo.next_number += 1
        return pr

    def fail_next(self, status: int, *, count: int = 1, headers: dict[str, str] | None = None,
                  body: dict[str, Any] | None = None) -> None:
        answer: dict[str, Any] = body or {"message": _REASONS.get(status, "error")}
        self._faults.append(Fault(status, headers or {}, answer, count))

    def hang_next(self, seconds: float, *, count: int = 1) -> None:
        self._hang, self._hang_count = min(seconds, 30.0), count

    def requests(self, *, write: bool | None = None) -> list[Logged]:
        return [e for e in self.log if write is None or e.write == write]

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def api_url(self, dialect: str) -> str:
        return {"github": f"{self.url}/github", "gitlab": f"{self.url}/gitlab/api/v4",
                "gitea": f"{self.url}/gitea/api/v1"}[dialect]

    # -- life cycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        forge = self

        class Handler(_Handler):
            pass

        Handler.owner = forge

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-forge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- dispatch --------------------------------------------------------------------------------------------

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self._faults.pop(0)
            return fault

    def _take_hang(self) -> float:
        with self._lock:
            if self._hang_count <= 0:
                return 0.0
            self._hang_count -= 1
            return self._hang

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        dialect, _, rest = parts.path.lstrip("/").partition("/")
        for prefix in ("api/v4/", "api/v1/"):
            if dialect in ("gitlab", "gitea") and rest.startswith(prefix):
                rest = rest[len(prefix):]
        status, out_headers, answer = self._route(dialect, method, rest, query, headers, body)
        with self._lock:
            self.log.append(Logged(method, dialect, unquote(rest), query, status))
        return status, out_headers, answer

    def _authorised(self, dialect: str, headers: dict[str, str]) -> bool:
        expected = {"github": f"Bearer {self.token}", "gitea": f"token {self.token}"}
        if dialect == "gitlab":
            bearer = f"Bearer {self.token}"
            return headers.get("private-token") == self.token or headers.get("authorization") == bearer
        return headers.get("authorization") == expected.get(dialect)

    def _route(self, dialect: str, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: Any) -> tuple[int, dict[str, str], Any]:
        if dialect not in ("github", "gitlab", "gitea"):
            return 404, {}, {"message": "no such API"}
        hang = self._take_hang()
        if hang:
            time.sleep(hang)
        fault = self._take_fault()
        if fault is not None:
            return fault.status, fault.headers, fault.body
        if not self._authorised(dialect, headers):
            return 401, {}, ({"message": "401 Unauthorized"} if dialect == "gitlab" else
                             {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
                             if dialect == "github" else {"message": "token is required", "url": ""})
        if dialect == "gitlab":
            return self._gitlab(method, path, query, body)
        return self._github_like(dialect, method, path, query, body)

    # -- paging ----------------------------------------------------------------------------------------------

    def _page(self, dialect: str, path: str, query: dict[str, str], items: list[Any],
              size_key: str) -> tuple[int, dict[str, str], Any]:
        size = min(int(query.get(size_key, self.page_size)), self.page_size)
        page = max(1, int(query.get("page", "1")))
        chunk = items[(page - 1) * size: page * size]
        headers: dict[str, str] = {"X-Total-Count": str(len(items))}
        if page * size < len(items):
            nxt = urlencode({**query, "page": str(page + 1)})
            root = self.api_url(dialect)
            headers["Link"] = f'<{root}/{path}?{nxt}>; rel="next"'
            if dialect == "gitlab":
                headers["X-Next-Page"] = str(page + 1)
        elif dialect == "gitlab":
            headers["X-Next-Page"] = ""
        return 200, headers, chunk

    # -- GitHub and Gitea ------------------------------------------------------------------------------------

    def _github_pr(self, dialect: str, full: str, pr: StoredPR) -> dict[str, Any]:
        site = f"{self.url}/{'' if dialect == 'github' else 'gitea-web/'}{full}"
        item: dict[str, Any] = {
            "number": pr.number, "html_url": f"{site}/pull/{pr.number}",
            "state": pr.state, "title": pr.title, "body": pr.body, "draft": pr.draft,
            "head": {"ref": pr.head, "repo": {"full_name": pr.head_repo or full}},
            "base": {"ref": pr.base, "repo": {"full_name": full}},
            "labels": [{"name": n} for n in pr.labels],
            "requested_reviewers": [{"login": r} for r in pr.reviewers],
        }
        if dialect == "gitea":
            item["html_url"] = f"{site}/pulls/{pr.number}"
        return item

    def _github_like(self, dialect: str, method: str, path: str, query: dict[str, str],
                     body: Any) -> tuple[int, dict[str, str], Any]:
        m = re.fullmatch(r"repos/([^/]+)/([^/]+)/(pulls|issues|labels)(?:/(\d+))?(?:/(\w+))?", path)
        if not m:
            return 404, {}, {"message": "Not Found"}
        full = f"{unquote(m.group(1))}/{unquote(m.group(2))}"
        repo = self._repos.get((dialect, full))
        if repo is None:
            return 404, {}, {"message": "Not Found"}
        kind, number, sub = m.group(3), m.group(4), m.group(5)
        if kind == "labels" and method == "GET":
            labels = [{"id": i, "name": n} for n, i in repo.labels.items()]
            return self._page(dialect, path, query, labels, "limit")
        if kind == "pulls" and number is None and method == "GET":
            items = [pr for pr in repo.prs.values() if pr.state == query.get("state", "open")]
            if "base" in query:
                items = [pr for pr in items if pr.base == query["base"]]
            return self._page(dialect, path, query, [self._github_pr(dialect, full, p) for p in items],
                              "per_page" if dialect == "github" else "limit")
        if kind == "pulls" and number is None and method == "POST":
            if not isinstance(body, dict) or not body.get("title") or not body.get("head"):
                return 422, {}, {"message": "Validation Failed",
                                 "errors": [{"resource": "PullRequest", "code": "missing_field"}]}
            if any(p.head == body["head"] and p.base == body.get("base") and p.state == "open"
                   for p in repo.prs.values()):
                if dialect == "github":
                    return 422, {}, {"message": "Validation Failed", "errors": [{
                        "resource": "PullRequest", "code": "custom",
                        "message": f"A pull request already exists for {full.split('/')[0]}:{body['head']}.",
                    }]}
                return 409, {}, {"message": "pull request already exists for these targets", "url": ""}
            wanted = body.get("labels") or []
            names = [n for n, i in repo.labels.items() if i in wanted]
            pr = self.add_pr(dialect, full, head=body["head"], base=body.get("base", "main"),
                             title=body["title"], body=body.get("body") or "", draft=bool(body.get("draft")),
                             labels=names)
            return 201, {}, self._github_pr(dialect, full, pr)
        pr_or_none = repo.prs.get(int(number)) if number else None
        if pr_or_none is None:
            return 404, {}, {"message": "Not Found"}
        pr = pr_or_none
        if kind == "pulls" and sub is None and method == "PATCH":
            for key in ("title", "body", "state"):
                if isinstance(body, dict) and key in body:
                    setattr(pr, key, body[key])
            return 200, {}, self._github_pr(dialect, full, pr)
        if kind == "pulls" and sub == "requested_reviewers" and method == "POST":
            teams = [f"team:{t}" for t in body.get("team_reviewers") or []]
            pr.reviewers += [*list(body.get("reviewers") or []), *teams]
            return 201, {}, self._github_pr(dialect, full, pr)
        if kind == "issues" and sub == "labels" and method == "POST":
            pr.labels += list(body.get("labels") or [])
            return 200, {}, [{"name": str(n)} for n in pr.labels]
        if kind == "issues" and sub == "comments" and method == "POST":
            pr.comments.append(str(body.get("body")))
            return 201, {}, {"id": len(pr.comments), "body": body.get("body")}
        return 404, {}, {"message": "Not Found"}

    # -- GitLab ----------------------------------------------------------------------------------------------

    def _gitlab_mr(self, full: str, pr: StoredPR) -> dict[str, Any]:
        project_id = 1000 + sorted(p for d, p in self._repos if d == "gitlab").index(full)
        return {
            "iid": pr.number, "id": 50000 + pr.number,
            "web_url": f"{self.url}/{full}/-/merge_requests/{pr.number}",
            "state": {"open": "opened"}.get(pr.state, pr.state), "title": pr.title, "description": pr.body,
            "draft": pr.title.startswith("Draft: "), "source_branch": pr.head, "target_branch": pr.base,
            "source_project_id": project_id if pr.head_repo is None else project_id + 1,
            "target_project_id": project_id, "labels": pr.labels,
            "reviewers": [{"username": r} for r in pr.reviewers],
        }

    def _gitlab(self, method: str, path: str, query: dict[str, str],
                body: Any) -> tuple[int, dict[str, str], Any]:
        if path == "users" and method == "GET":
            name = query.get("username", "")
            return 200, {}, ([{"id": self.users[name], "username": name}] if name in self.users else [])
        # the project path arrives URL-encoded as one segment (group%2Fsub%2Fproject)
        m = re.fullmatch(r"projects/([^/]+)/merge_requests(?:/(\d+))?(?:/(\w+))?", path)
        if not m:
            return 404, {}, {"error": "404 Not Found"}
        full = unquote(m.group(1))
        if "/" in m.group(1):
            return 404, {}, {"error": "404 Not Found"}
        repo = self._repos.get(("gitlab", full))
        if repo is None:
            return 404, {}, {"message": "404 Project Not Found"}
        number, sub = m.group(2), m.group(3)
        if number is None and method == "GET":
            state = {"opened": "open"}.get(query.get("state", "opened"), query.get("state"))
            items = [p for p in repo.prs.values() if p.state == state]
            if "target_branch" in query:
                items = [p for p in items if p.base == query["target_branch"]]
            return self._page("gitlab", path, query, [self._gitlab_mr(full, p) for p in items], "per_page")
        if number is None and method == "POST":
            if not isinstance(body, dict) or not body.get("title") or not body.get("source_branch"):
                return 400, {}, {"message": {"title": ["can't be blank"]}}
            if any(p.head == body["source_branch"] and p.state == "open" for p in repo.prs.values()):
                words = "Another open merge request already exists for this source branch"
                return 409, {}, {"message": [words]}
            ids = {v: k for k, v in self.users.items()}
            pr = self.add_pr("gitlab", full, head=body["source_branch"],
                             base=body.get("target_branch", "main"),
                             title=body["title"], body=body.get("description") or "",
                             labels=[x for x in str(body.get("labels") or "").split(",") if x],
                             reviewers=[ids[i] for i in body.get("reviewer_ids") or [] if i in ids])
            return 201, {}, self._gitlab_mr(full, pr)
        pr_or_none = repo.prs.get(int(number)) if number else None
        if pr_or_none is None:
            return 404, {}, {"message": "404 Not found"}
        pr = pr_or_none
        if sub is None and method == "PUT":
            if "title" in body:
                pr.title = body["title"]
            if "description" in body:
                pr.body = body["description"]
            if body.get("state_event") == "close":
                pr.state = "closed"
            return 200, {}, self._gitlab_mr(full, pr)
        if sub == "notes" and method == "POST":
            pr.comments.append(str(body.get("body")))
            return 201, {}, {"id": len(pr.comments), "body": body.get("body")}
        return 404, {}, {"error": "404 Not Found"}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a hanging answer is what the hang is for: no traceback."""


class _Handler(BaseHTTPRequestHandler):
    owner: FakeForge
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, answer = self.owner.handle(self.command, self.path, headers, body)
        data = b"" if status == 204 else json.dumps(answer).encode()
        self.send_response(status, _REASONS.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve
