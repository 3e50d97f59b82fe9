"""Per-channel limits and circuit breakers, so one slow or broken gateway holds up no other.

The dispatcher claims work for a channel only while the channel has a free slot (concurrency)
and a token (rate), so nothing it has claimed waits in memory holding a lease. A breaker per
gateway opens after consecutive retryable failures; while open, deliveries through that gateway
fail fast and are rescheduled instead of waiting on timeouts; after the cool-down one trial goes
through (half-open) and its outcome closes or re-opens the breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.settings import ChannelLimits, Settings

Clock = Callable[[], float]

# Group robots accept about 20 messages a minute each; a burst beyond that is refused. A webhook
# is the platform's own gateway, sized for a disaster's burst of alerts (250/s for 5,000
# reports a minute), and so is the local alerts file, which has no provider to spare (every
# drill alert lands there when no drill contact is configured); SMS, voice and e-mail keep the
# cautious default of their providers.
DEFAULT_LIMITS: dict[str, ChannelLimits] = {
    "webhook": ChannelLimits(concurrency=32, rate_per_second=300, burst=300),
    "file": ChannelLimits(concurrency=32, rate_per_second=300, burst=300),
    "wecom": ChannelLimits(concurrency=2, rate_per_second=20 / 60, burst=5),
    "dingtalk": ChannelLimits(concurrency=2, rate_per_second=20 / 60, burst=5),
}


def limits_for(channel: str, settings: Settings) -> ChannelLimits:
    return settings.notification_channel_limits.get(channel) or DEFAULT_LIMITS.get(
        channel, ChannelLimits()
    )


@dataclass
class TokenBucket:
    rate: float
    burst: int
    clock: Clock = time.monotonic
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.updated = self.clock()

    def available(self) -> int:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return int(self.tokens)

    def take(self, count: int = 1) -> None:
        self.available()
        self.tokens -= count

    def seconds_until_token(self) -> float:
        """How long until a whole token is there again (0: one is there now)."""
        self.available()
        return max(1.0 - self.tokens, 0.0) / self.rate


@dataclass
class CircuitBreaker:
    failures_to_open: int
    cooldown: float
    clock: Clock = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_in_flight: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self.clock() - self.opened_at < self.cooldown else "half-open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(self.cooldown - (self.clock() - self.opened_at), 0.0)

    def record(self, healthy: bool) -> None:
        """`healthy`: the gateway answered (even a permanent refusal); else it failed us."""
        self.trial_in_flight = False
        if healthy:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failures_to_open:
            self.opened_at = self.clock()


@dataclass
class ChannelGuard:
    limits: ChannelLimits
    breaker_failures: int
    breaker_cooldown: float
    clock: Clock = time.monotonic
    in_flight: int = 0
    bucket: TokenBucket = field(init=False)
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(self.limits.rate_per_second, self.limits.burst, self.clock)

    def capacity(self) -> int:
        return max(min(self.limits.concurrency - self.in_flight, self.bucket.available()), 0)

    def started(self, count: int) -> None:
        self.in_flight += count
        self.bucket.take(count)

    def finished(self) -> None:
        self.in_flight -= 1

    def seconds_until_room(self) -> float | None:
        """How long until the channel takes a send again, when only time frees it (its rate);
        None when its slots are all taken: a send that ends frees one, and says so."""
        if self.in_flight >= self.limits.concurrency:
            return None
        return self.bucket.seconds_until_token()

    def breaker(self, gateway: str) -> CircuitBreaker:
        if gateway not in self.breakers:
            self.breakers[gateway] = CircuitBreaker(
                self.breaker_failures, self.breaker_cooldown, self.clock
            )
        return self.breakers[gateway]


@dataclass
class SendSlot:
    """A send's place among its channel's sends in flight: given back once, as soon as the
    gateway has answered (the answer may then wait for its record), or when the send fails."""

    guard: ChannelGuard | None
    given_back: bool = False

    def give_back(self) -> bool:
        """Free the slot; True when the channel was full until now (a claim may be made)."""
        if self.guard is None or self.given_back:
            return False
        self.given_back = True
        was_full = self.guard.in_flight >= self.guard.limits.concurrency
        self.guard.finished()
        return was_full
