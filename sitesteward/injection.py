"""Flag prompt-injection attempts in crawled content, for the reviewer (nothing is acted on).

Crawled text is data, never instructions; this module only makes attempts visible: instructions that
address an AI in visible text, HTML comments, hidden elements (``display:none``, ``visibility:hidden``,
``hidden``, ``aria-hidden``), ``alt``/``title`` attributes, ``<meta>`` content and JSON-LD.
"""

from __future__ import annotations

import re

import lxml.html  # type: ignore[import-untyped, unused-ignore]
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

_PHRASES: list[tuple[str, re.Pattern[str]]] = [
    (
        "asks to ignore previous instructions",
        re.compile(
            r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|your|system)\b.{0,30}"
            r"\b(instructions?|prompts?|rules|guidelines|directions)\b",
            re.I | re.S,
        ),
    ),
    (
        "asks for approval or publication",
        re.compile(
            r"\b(approve|auto-?approve|publish|merge|deploy)\b.{0,40}\b(this|these|it|immediately|now|"
            r"without (review|approval|asking))\b",
            re.I | re.S,
        ),
    ),
    (
        "asks for secrets",
        re.compile(
            # "_" too: an environment variable such as OPENAI_API_KEY or SITESTEWARD_LLM_API_KEY
            r"\b(print|reveal|show|output|send|leak|tell|give)\b.{0,40}(?:\b|_)(api[ _-]?keys?|secrets?|"
            r"passwords?|credentials?|tokens?|system prompt|environment variables?)\b",
            re.I | re.S,
        ),
    ),
    (
        "addresses an AI",
        re.compile(
            r"\b(as an (ai|llm|language model)|dear (ai|assistant|llm|model)|"
            r"(ai|llm) (assistant|agent|model)s?\s*[:,]|"
            r"you are (now )?(an?|the) (ai|assistant|model|agent|helpful)|"
            r"new instructions\s*:|system prompt\s*:|"
            r"<\|im_start\|>|\[INST\]|### (system|instruction))",
            re.I,
        ),
    ),
    (
        "claims an approval was given",
        re.compile(
            r"\balready\s+(been\s+)?(pre-?)?(approved|authori[sz]ed|signed off)\b|\bpre-?approved\b|"
            r"\breviewer\b.{0,30}\b(approved|agreed|signed off)\b",
            re.I | re.S,
        ),
    ),
    (
        "asks to add links or scripts",
        re.compile(
            r"\b(add|insert|include|embed)\b.{0,40}"
            r"\b(a link to|links? to|<script|script tag|iframe|backlink)",
            re.I | re.S,
        ),
    ),
]
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|opacity\s*:\s*0(?![.\d])", re.I
)
_MAX_QUOTE = 120


def _phrases(text: str) -> list[str]:
    return [label for label, pattern in _PHRASES if pattern.search(text)]


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_QUOTE else text[: _MAX_QUOTE - 1] + "…"


def _is_hidden(element: etree._Element) -> bool:
    for node in [element, *element.iterancestors()]:
        if not isinstance(node.tag, str):
            continue
        if node.get("hidden") is not None or (node.get("aria-hidden") or "").lower() == "true":
            return True
        if _HIDDEN_STYLE.search(node.get("style") or ""):
            return True
    return False


def detect_injection(html_or_text: str) -> list[str]:
    """Find instructions aimed at an AI in a page or source; one human-readable flag per finding.

    Args:
        html_or_text: An HTML document or plain text / Markdown.

    Returns:
        Flags like ``hidden text (display:none) asks to ignore previous instructions: "..."``, in document
        order, without duplicates. Empty when nothing looks like an injection attempt.
    """
    flags: list[str] = []

    def flag(where: str, text: str) -> None:
        for label in _phrases(text):
            entry = f'{where} {label}: "{_quote(text)}"'
            if entry not in flags:
                flags.append(entry)

    looks_like_html = bool(re.search(r"<[a-zA-Z!][^>]*>", html_or_text))
    if not looks_like_html:
        for comment in re.findall(r"<!--(.*?)-->", html_or_text, re.S):
            flag("HTML comment", comment)
        for paragraph in re.split(r"\n\s*\n", html_or_text):
            flag("text", paragraph)
        return flags
    try:
        root = lxml.html.document_fromstring(html_or_text)
    except (etree.ParserError, ValueError):
        flag("text", html_or_text)
        return flags
    for node in root.iter():
        if isinstance(node, etree._Comment):
            flag("HTML comment", str(node.text or ""))
            continue
        if not isinstance(node.tag, str):
            continue
        if node.tag == "script":
            kind = (node.get("type") or "").lower()
            if "json" in kind:
                flag("JSON-LD" if "ld+json" in kind else "JSON data", node.text or "")
            continue
        if node.tag == "style":
            continue
        for attribute in ("alt", "title", "aria-label", "content", "placeholder"):
            value = node.get(attribute)
            if value:
                where = "meta content" if node.tag == "meta" else f"{attribute} text"
                flag(where, value)
        own = " ".join(t for t in [node.text or ""] if t.strip())
        if own.strip():
            flag("hidden text" if _is_hidden(node) else "text", own)
        tail = node.tail or ""
        parent = node.getparent()
        if tail.strip() and parent is not None:
            flag("hidden text" if _is_hidden(parent) else "text", tail)
    # an instruction split over inline elements (<p>Ignore <b>previous</b> instructions</p>)
    for block in root.iter(
        "p", "li", "div", "span", "td", "blockquote", "h1", "h2", "h3", "section", "article"
    ):
        text = block.text_content()
        if any(label in f for f in flags for label in _phrases(text)):
            continue
        flag("hidden text" if _is_hidden(block) else "text", text)
    return flags
