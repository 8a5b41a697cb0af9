"""Load a block by name with a one-line error, whatever its type (the flows' ``*_block`` parameters)."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound

from sitesteward.errors import ConfigurationError

B = TypeVar("B", bound=Block)


def load_named(block_type: type[B], name: str) -> B:
    """Load the ``block_type`` block ``name`` (``my-name`` or ``<type-slug>/my-name``).

    Needs the Prefect API (``PREFECT_API_URL``, or the ephemeral server).

    Raises:
        ConfigurationError: a malformed name, or no such block (one line, for the CLI's exit code 2).
    """
    kind = block_type.__name__
    plain = name.removeprefix(block_type.get_block_type_slug() + "/").strip()
    if not plain or "/" in plain:
        raise ConfigurationError(f"bad {kind} block name {name!r}: expected a name such as my-site")
    try:
        # Called from sync code: load() returns the block, though it is typed as maybe-awaitable.
        return cast(B, block_type.load(plain))
    except (ValueError, ObjectNotFound):
        # Prefect says ValueError("Unable to find block document named ..."): say which kind, in one line.
        raise ConfigurationError(
            f"unknown {kind} block {plain!r}: create it in the Prefect UI (Blocks) or run "
            "`sitesteward bootstrap`, then pass its name"
        ) from None
