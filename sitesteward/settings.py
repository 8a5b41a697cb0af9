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
    approve_all: bool = Field(
        default=False,
        description="The demo command only: it approves its own drafts (CI). Flows never read it.",
    )
    fault_points: str = Field(
        default="",
        description="Tests only: comma-separated fault points to arm (name=action).",
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
