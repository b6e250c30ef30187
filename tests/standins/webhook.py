"""Teams Workflows webhook stand-in: accepts `{"type": "message", "attachments": [adaptive card]}` up to 28 KB."""

from __future__ import annotations

from tests.standins.base import Request, Response, StandIn

LIMIT = 28 * 1024


class WebhookStandIn(StandIn):
    def __init__(self):
        super().__init__()
        self.posts: dict[str, list[dict]] = {}
        self.route("POST", r"/workflows/(?P<name>[^/]+)", "post", self._post, auth=False)

    def url_for(self, name: str) -> str:
        return f"{self.url}/workflows/{name}"

    def _post(self, request: Request) -> Response:
        if len(request.body) > LIMIT:
            return Response(413, {"error": {"code": "RequestEntityTooLarge", "message": "over 28 KB"}})
        body = request.json()
        attachments = body.get("attachments") or []
        if body.get("type") != "message" or not attachments or \
                attachments[0].get("contentType") != "application/vnd.microsoft.card.adaptive":
            return Response(400, {"error": {"code": "InvalidRequest", "message": "not an adaptive card message"}})
        self.posts.setdefault(request.match["name"], []).append(body)
        return Response(202, b"")
