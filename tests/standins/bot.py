"""Bot Connector stand-in: create 1:1 conversations and post activities, 7 sends/s per conversation enforced."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict, deque

from tests.standins.base import Request, Response, StandIn, TokenIssuer


class BotStandIn(StandIn):
    def __init__(self, issuer: TokenIssuer, *, installed_for: set[str] | None = None, per_conversation: int = 7):
        super().__init__(issuer=issuer)
        self.installed_for = installed_for  # AAD object ids with the app installed (None: everyone)
        self.per_conversation = per_conversation
        self.conversations: dict[str, str] = {}  # conversation id -> member object id
        self.activities: list[tuple[str, dict]] = []
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._bot_lock = threading.Lock()
        self.route("POST", r"/v3/conversations", "conversations", self._create)
        self.route("POST", r"/v3/conversations/(?P<id>[^/]+)/activities", "activities", self._post)

    def _create(self, request: Request) -> Response:
        body = request.json()
        members = body.get("members") or []
        if body.get("isGroup") or len(members) != 1 or not body.get("tenantId"):
            return Response(400, {"error": {"code": "BadArgument", "message": "one member and a tenant required"}})
        member = members[0]["id"]
        if self.installed_for is not None and member not in self.installed_for:
            return Response(403, {"error": {"code": "Forbidden", "message": "bot not installed for the user"}})
        with self._bot_lock:
            for conversation, who in self.conversations.items():
                if who == member:
                    return Response(200, {"id": conversation})
            conversation = f"a:{uuid.uuid4().hex}"
            self.conversations[conversation] = member
        return Response(201, {"id": conversation})

    def _post(self, request: Request) -> Response:
        conversation = request.match["id"]
        now = time.time()
        with self._bot_lock:
            if conversation not in self.conversations:
                return Response(404, {"error": {"code": "ConversationNotFound", "message": "unknown"}})
            recent = self._recent[conversation]
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) >= self.per_conversation:
                return Response(429, {"error": {"code": "TooManyRequests", "message": "slow down"}},
                                {"Retry-After": "1"})
            recent.append(now)
            activity = request.json()
            self.activities.append((conversation, activity))
        return Response(201, {"id": f"1:{uuid.uuid4().hex[:12]}"})
