"""One settings class; nothing else in sitesteward reads ``os.environ``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings, read from ``SITESTEWARD_*`` environment variables (and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="SITESTEWARD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".sitesteward"),
        description="Where the crawl store, ledger (SQLite) and reports live.",
    )
    database_url: str | None = Field(
        default=None,
        description="Ledger database URL (SQLAlchemy). Default: SQLite in data_dir.",
    )
    lock_url: str | None = Field(
        default=None,
        description="Redis URL for step locks across workers (prefect-redis). Unset: no cross-worker locks.",
    )
    allow_private: bool = Field(
        default=False,
        description="Allow crawling private, loopback and link-local addresses (tests and the demo).",
    )
    user_agent: str = Field(
        default="sitesteward/0.1 (+https://github.com/sitesteward/sitesteward)",
        description="User agent sent with every request and matched against robots.txt.",
    )
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint.")
    llm_model: str = Field(default="gpt-4o-mini", description="Model name for drafting.")
    llm_api_key: SecretStr | None = Field(default=None, description="API key; unset = offline drafter.")
    llm_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="Per-request timeout of a model call (transient)."
    )
    llm_max_tokens_per_job: int = Field(
        default=50_000,
        ge=0,
        le=10_000_000,
        description="Tokens (prompt + answer) one job may spend on the model (checked before and after).",
    )
    llm_max_cost_usd_per_job: float = Field(
        default=0.50,
        ge=0,
        le=1_000,
        description="USD one job may spend on the model (priced by llm_price_per_million_tokens).",
    )
    llm_price_per_million_tokens: tuple[float, float] | None = Field(
        default=None,
        description=(
            "USD per million (input, output) tokens of llm_model, as JSON '[0.15, 0.6]'. Unset: the "
            "built-in table in sitesteward.llm (an unknown model then costs 0, so only tokens are capped)."
        ),
    )
    retry_delay_scale: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Multiplies the task retry delays (tests use a small value; leave 1 in production).",
    )
    approve_all: bool = Field(
        default=False,
        description="The demo command only: it approves its own drafts (CI). Flows never read it.",
    )
    extract_processes: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description=(
            "Worker processes that parse crawled HTML beside the crawler's own thread. Unset: one on a "
            "machine with two or more cores, none on one core; 0: parse in the crawler's thread only."
        ),
    )
    fault_points: str = Field(
        default="",
        description="Tests only: comma-separated fault points to arm (name=action).",
    )
    clock_file: Path | None = Field(
        default=None,
        description=(
            "Tests only: the ledger's clock reads this file (an offset in seconds or an ISO time) on "
            "every reading, so a test can move time for worker processes. Unset: the system clock."
        ),
    )

    @property
    def crawl_store_path(self) -> Path:
        """SQLite file that keeps crawl snapshots for conditional re-crawls and diffs."""
        return self.data_dir / "crawl.sqlite"

    @property
    def ledger_url(self) -> str:
        """The ledger's SQLAlchemy URL (SQLite in ``data_dir`` unless ``database_url`` is set)."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'ledger.sqlite').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
