"""Prefect Block types of sitesteward, registered with ``prefect block register -m blocks``.

``prefect block register`` registers every Block class this module exposes, so each one is imported here.
"""

from blocks.content import MarkdownContentTarget
from blocks.llm import LLMConfig
from blocks.site import SiteConfig

#: Every block type, in registration order (used by ``deployments.bootstrap``).
BLOCK_TYPES = (SiteConfig, LLMConfig, MarkdownContentTarget)

__all__ = ["BLOCK_TYPES", "LLMConfig", "MarkdownContentTarget", "SiteConfig"]
