"""``LLMConfig``: the drafting model's endpoint, model name, key and per-job budgets."""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from blocks.site import DOCS_URL
from sitesteward.settings import Settings


class LLMConfig(Block):
    """An OpenAI-protocol endpoint for drafting. Without a key the offline drafter is used.

    The key is a secret field: the Prefect API stores it encrypted at rest and the UI shows it obfuscated.
    Load the block at the call site and never pass its key as a flow parameter or log it.
    """

    _block_type_name: ClassVar[str] = "Sitesteward LLM Config"
    _documentation_url: ClassVar[HttpUrl | None] = DOCS_URL
    _code_example: ClassVar[str] = """
```python
from blocks import LLMConfig
from sitesteward.llm import select_drafter
from sitesteward.settings import get_settings

llm = LLMConfig.load("BLOCK_NAME")
drafter = select_drafter(llm.apply_to(get_settings()))
```
"""

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint (empty: the OpenAI API)."
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, description="Model name used for drafting.")
    api_key: SecretStr | None = Field(default=None, description="API key (empty: the offline drafter).")
    max_tokens_per_job: int = Field(
        default=50_000, ge=0, le=10_000_000, description="Tokens one refresh job may spend at most."
    )
    max_cost_usd_per_job: float = Field(
        default=0.50, ge=0, le=1_000, description="Cost in USD one refresh job may spend at most."
    )

    def apply_to(self, settings: Settings) -> Settings:
        """Return ``settings`` with this block's endpoint, model, key and budgets (``settings`` is unchanged).

        The budgets are enforced by the drafter :func:`sitesteward.llm.select_drafter` builds from the
        returned settings (a call that would overspend raises ``BudgetExceeded``).

        Args:
            settings: The process settings (``sitesteward.settings.get_settings()``).

        Returns:
            A copy whose ``llm_*`` fields come from this block.
        """
        return settings.model_copy(
            update={
                "llm_base_url": self.base_url,
                "llm_model": self.model,
                "llm_api_key": self.api_key,
                "llm_max_tokens_per_job": self.max_tokens_per_job,
                "llm_max_cost_usd_per_job": self.max_cost_usd_per_job,
            }
        )
