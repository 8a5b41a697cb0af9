"""robots.txt: fetched once per origin, parsed with protego, obeyed for every request.

Status handling follows RFC 9309 (and Google): a 4xx robots.txt (404, 410, even 401/403) means no
rules, so everything is allowed; a 5xx, a timeout or a connection failure means the site may be in
trouble, so the whole origin is treated as disallowed for this crawl. Redirects are followed (up to
five hops) and the body is capped at 500 KiB, the minimum the RFC asks parsers to read.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from protego import Protego

from sitesteward.crawl.fetch import Fetcher, RobotsRefusal
from sitesteward.crawl.politeness import Politeness
from sitesteward.models import FetchError

logger = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 500 * 1024
#: Crawl-delay values above this are capped (a typo of 3600 must not stall a crawl for days).
CRAWL_DELAY_CAP_SECONDS = 10.0


class RobotsMode(StrEnum):
    rules = "rules"
    allow_all = "allow_all"
    disallow_all = "disallow_all"


@dataclass
class RobotsPolicy:
    """The rules of one origin for one user agent.

    Attributes:
        mode: Whether rules apply, or everything is allowed or disallowed (fetch outcome).
        detail: Why (``robots.txt 404``, ``robots.txt 503``, ...).
        sitemaps: ``Sitemap:`` lines.
        crawl_delay: The agent's ``Crawl-delay``, if any (already capped).
        unreachable: Set when robots.txt could not be fetched at all (connection failure, refused
            address, timeout): the origin itself is unreachable, which callers report as such.
    """

    mode: RobotsMode
    detail: str = ""
    parser: Protego | None = None
    agent: str = "*"
    sitemaps: list[str] = field(default_factory=list)
    crawl_delay: float | None = None
    unreachable: FetchError | None = None
    unreachable_detail: str | None = None
    unreachable_dns: bool = False

    def allows(self, url: str) -> bool:
        """Tell whether the agent may fetch ``url`` (an absolute URL of this origin)."""
        if self.mode == RobotsMode.allow_all:
            return True
        if self.mode == RobotsMode.disallow_all:
            return False
        assert self.parser is not None
        # /robots.txt itself is always allowed.
        if urlsplit(url).path == "/robots.txt":
            return True
        return bool(self.parser.can_fetch(url, self.agent))


def product_token(user_agent: str) -> str:
    """The robots.txt product token of a User-Agent (``sitesteward/0.1 (+url)`` -> ``sitesteward``)."""
    token = user_agent.strip().split("/", 1)[0].split()[0] if user_agent.strip() else "*"
    return token.lower()


def parse_robots(text: str, user_agent: str) -> RobotsPolicy:
    """Parse robots.txt text for ``user_agent`` (wildcards and ``$`` anchors via protego)."""
    parser = Protego.parse(text)
    agent = product_token(user_agent)
    delay = parser.crawl_delay(agent)
    return RobotsPolicy(
        mode=RobotsMode.rules,
        detail="robots.txt rules",
        parser=parser,
        agent=agent,
        sitemaps=list(parser.sitemaps),
        crawl_delay=min(float(delay), CRAWL_DELAY_CAP_SECONDS) if delay else None,
    )


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL (robots.txt is per origin)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


class RobotsCache:
    """Fetch and keep one :class:`RobotsPolicy` per origin.

    Args:
        fetcher: Used without the robots gate (robots.txt is always allowed).
        user_agent: The configured user agent.
        politeness: Told about ``Crawl-delay`` so request spacing follows it.
    """

    def __init__(self, fetcher: Fetcher, user_agent: str, politeness: Politeness | None = None) -> None:
        self._fetcher = fetcher
        self._user_agent = user_agent
        self._politeness = politeness
        self._policies: dict[str, RobotsPolicy] = {}
        self._pending: dict[str, asyncio.Future[RobotsPolicy]] = {}

    async def policy(self, url: str) -> RobotsPolicy:
        """The policy of ``url``'s origin (fetched once; concurrent callers share the fetch)."""
        origin = origin_of(url)
        known = self._policies.get(origin)
        if known is not None:
            return known
        pending = self._pending.get(origin)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[RobotsPolicy] = asyncio.get_running_loop().create_future()
        self._pending[origin] = future
        try:
            policy = await self._load(origin)
        except BaseException:
            future.cancel()  # waiters see the cancellation instead of hanging
            del self._pending[origin]
            raise
        self._policies[origin] = policy
        future.set_result(policy)
        del self._pending[origin]
        if policy.crawl_delay and self._politeness is not None:
            self._politeness.slow_down(urlsplit(origin).netloc, policy.crawl_delay)
        return policy

    async def allows(self, url: str) -> bool:
        """Tell whether robots.txt lets the configured agent fetch ``url``."""
        return (await self.policy(url)).allows(url)

    async def refusal(self, url: str) -> RobotsRefusal | None:
        """The robots gate of a :class:`~sitesteward.crawl.fetch.Fetcher`: None if ``url`` may be fetched."""
        policy = await self.policy(url)
        if policy.allows(url):
            return None
        if policy.unreachable is not None:
            detail = policy.unreachable_detail or policy.detail
            return RobotsRefusal(policy.unreachable, detail, dns_failure=policy.unreachable_dns)
        return RobotsRefusal(FetchError.robots_disallowed, f"robots.txt disallows {url}")

    async def _load(self, origin: str) -> RobotsPolicy:
        exchange = await self._fetcher.fetch(
            f"{origin}/robots.txt", body="any", max_bytes=ROBOTS_MAX_BYTES, use_robots=False
        )
        status = exchange.status
        if status is not None and 200 <= status < 300:
            text = exchange.body.decode("utf-8", "replace")
            return parse_robots(text, self._user_agent)
        if exchange.error in (FetchError.redirect_loop, FetchError.too_many_redirects):
            return RobotsPolicy(RobotsMode.allow_all, f"robots.txt unavailable ({exchange.error}): no rules")
        if status is not None and 400 <= status < 500:
            return RobotsPolicy(RobotsMode.allow_all, f"robots.txt {status}: no rules")
        reason = (
            f"robots.txt {status}"
            if status
            else f"robots.txt unreachable ({exchange.error}: {exchange.detail})"
        )
        logger.warning("%s for %s: treating the origin as disallowed", reason, origin)
        return RobotsPolicy(
            RobotsMode.disallow_all,
            f"{reason}: everything disallowed",
            unreachable=exchange.error if status is None else None,
            unreachable_detail=exchange.detail if status is None else None,
            unreachable_dns=exchange.dns_failure,
        )
