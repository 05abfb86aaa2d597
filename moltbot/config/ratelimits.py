"""The `[rate_limits]` settings: how fast moltbot lets itself call each external API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Each service's published limit, and the client-side limit moltbot keeps below it. A limit is a
# token bucket: `burst` requests at once, then `per_second` (or `per_minute`) more on average.
# Sources, as read on the providers' pages:
# - Notion, developers.notion.com/reference/request-limits: "an average of three requests per
#   second" per integration, "some bursts beyond the average rate are allowed" (size unstated;
#   the sandbox models 20).
# - Google Sheets, developers.google.com/workspace/sheets/api/limits: 60 read and 60 write
#   requests per minute per user. 10 at once plus 50 a minute keeps any 60-second window at 60.
# - Slack incoming webhooks, docs.slack.dev/apis/web-api/rate-limits: posting messages "1 per
#   second", short bursts allowed without a guarantee: one message a second per webhook.
# - Jira Cloud, developer.atlassian.com/cloud/jira/platform/rate-limiting: API-token traffic is
#   held by unpublished burst limits per tenant and endpoint (a token bucket), and writes to one
#   issue are limited too; 5 a second with bursts of 10 is far below anything reported.
# - Twilio, twilio.com/docs/api/errors/20429: too many concurrent requests answer 429/20429;
#   Twilio queues messages and sends them at the sender's rate (a long code 1 a second). An
#   alert texts a few on-call numbers: 1 a second with bursts of 3.
# - Solapi publishes no request limit (solapi/documents); one request carries every
#   recipient of an alert, so 1 a second with bursts of 3 is ample.
# - KakaoWork publishes no limit ("excessive use may be limited without notice",
#   docs.kakaoi.ai/kakao_work/webapireference/commonguide/): 2 a second with bursts of 5.
# - NAVER WORKS, developers.worksmobile.com/en/docs/rate-limits: 240 requests a minute per API
#   (60 on the free plan); 200 a minute with bursts of 10 stays under the paid limit.
# - JANDI (support.jandi.com/en/articles/6352697) and Dooray! publish no webhook limit: 20 a
#   minute with bursts of 5 per webhook URL is more than a room can read, and stays under the
#   60 a minute the sandbox assumes for both.
DEFAULT_RATE_LIMITS: dict[str, dict[str, float]] = {
    "notion": {"per_second": 3.0, "burst": 10},
    "sheets_read": {"per_minute": 50.0, "burst": 10},
    "sheets_write": {"per_minute": 50.0, "burst": 10},
    "slack": {"per_second": 1.0, "burst": 1},
    "jira": {"per_second": 5.0, "burst": 10},
    "kakaowork": {"per_second": 2.0, "burst": 5},
    "naverworks": {"per_minute": 200.0, "burst": 10},
    "twilio": {"per_second": 1.0, "burst": 3},
    "solapi": {"per_second": 1.0, "burst": 3},
    "jandi": {"per_minute": 20.0, "burst": 5},
    "dooray": {"per_minute": 20.0, "burst": 5},
}
_RATE_KEYS = ("per_second", "per_minute")


class ServiceRateLimit(BaseModel):
    """One API's client-side limit, per credential: `burst` requests at once, then a steady rate.

    Give the rate as `per_second` or `per_minute` (not both).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="False: no client-side limit for this API.")
    per_second: float | None = Field(default=None, gt=0, description="Steady requests a second.")
    per_minute: float | None = Field(default=None, gt=0, description="Steady requests a minute.")
    burst: int = Field(default=1, ge=1, le=1000, description="Requests allowed at once.")

    @model_validator(mode="after")
    def _one_rate(self) -> ServiceRateLimit:
        if (self.per_second is None) == (self.per_minute is None):
            raise ValueError("give exactly one of per_second and per_minute")
        return self

    @property
    def rate(self) -> float:
        """Requests a second on average."""
        if self.per_second is not None:
            return self.per_second
        assert self.per_minute is not None
        return self.per_minute / 60.0


class RateLimits(BaseModel):
    """Client-side limits for every external API moltbot calls (`[rate_limits]` in moltbot.toml).

    A table given for one API replaces only the keys it names: ``[rate_limits.notion]`` with
    ``burst = 5`` keeps the 3 a second; a rate in the other unit replaces the default's rate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="False: no client-side limits at all.")
    notion: ServiceRateLimit = Field(description="Notion, per integration token.")
    sheets_read: ServiceRateLimit = Field(description="Sheets reads, per service account.")
    sheets_write: ServiceRateLimit = Field(description="Sheets writes, per service account.")
    slack: ServiceRateLimit = Field(description="Slack, per webhook URL or bot channel.")
    jira: ServiceRateLimit = Field(description="Jira Cloud, per site.")
    kakaowork: ServiceRateLimit = Field(description="KakaoWork bots, per app key.")
    naverworks: ServiceRateLimit = Field(description="NAVER WORKS bots, per app (client id).")
    twilio: ServiceRateLimit = Field(description="Twilio Messages, per account.")
    solapi: ServiceRateLimit = Field(description="Solapi, per API key.")
    jandi: ServiceRateLimit = Field(description="JANDI, per incoming-webhook URL.")
    dooray: ServiceRateLimit = Field(description="Dooray!, per incoming-hook URL.")

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for service, default in DEFAULT_RATE_LIMITS.items():
            given = data.get(service)
            if given is None:
                merged[service] = dict(default)
            elif isinstance(given, dict):
                base = dict(default)
                if any(key in given for key in _RATE_KEYS):
                    for key in _RATE_KEYS:
                        base.pop(key, None)
                merged[service] = base | given
        return merged

    def for_service(self, service: str) -> ServiceRateLimit | None:
        """The limit in force for `service` (a field name), None when limits are off for it."""
        limit: ServiceRateLimit = getattr(self, service)
        return limit if self.enabled and limit.enabled else None
