"""A/B variants: several message texts in one campaign, each recipient assigned one of them.

The edge routes a token with campaign-level data only (``DESIGN.md``), so a recipient's variant is
never stored per recipient in Redis: it is a function of campaign-level data and the recipient's
index. Each campaign draws a random 16-byte ``seed``; recipient ``r`` gets the variant whose
weight interval holds ``blake2b(r, key=seed)`` read as a fraction of 2**64. The hash spreads
recipients independently of the list's order (a list sorted by sign-up date still splits evenly
across its length), the seed makes the split of one campaign unrelated to another's, and the edge
computes it in a microsecond.

A campaign's token range is allocated with the most links any variant has (``slots``): recipient
``r``'s link ``l`` is still ``seq_start + r * slots + l``, and a slot past the end of a recipient's
variant is an unknown token.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shortcore import _core
from shortcore.campaigns import (
    CampaignError,
    CampaignRange,
    MessageBatches,
    prepare_template,
)
from shortcore.links import MessageTemplate
from shortcore.routing import VariantRoute
from shortcore.tokens import TokenCodec

MIN_VARIANTS: Final = 2
# One letter each, A to Z: more arms than that split a list too thin to learn anything.
MAX_VARIANTS: Final = 26
MAX_WEIGHT: Final = 1_000_000.0
# Names go into utm_content and report headers: short, URL-safe, no spaces.
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
SEED_BYTES: Final = 16


class VariantError(CampaignError):
    """Variants that cannot be used as given; the message says which and why, for a 422."""


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One variant as asked for: its name, message text and relative weight."""

    name: str
    text: str
    weight: float


def parse_variants(value: object) -> list[VariantSpec]:
    """Checks the ``variants`` field: a list of 2 to 26 objects ``{"name", "text", "weight"}``
    with unique names and weights > 0 (``weight`` defaults to 1). The texts are checked when the
    templates are prepared (:func:`prepare_variants`)."""
    if isinstance(value, str | bytes):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise VariantError("'variants' is not valid JSON") from None
    if not isinstance(value, list) or not MIN_VARIANTS <= len(value) <= MAX_VARIANTS:
        raise VariantError(f"'variants' must be a list of {MIN_VARIANTS} to {MAX_VARIANTS} variants")
    specs: list[VariantSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"variants[{i}]"
        if not isinstance(item, Mapping):
            raise VariantError(f"{where} must be an object with 'name', 'text' and 'weight'")
        unknown = sorted(set(item) - {"name", "text", "weight"})
        if unknown:
            raise VariantError(f"{where} has an unknown field {unknown[0]!r}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise VariantError(
                f"{where}.name must be 1 to 32 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        if name.casefold() in seen:
            raise VariantError(f"{where}.name {name!r} is used twice")
        seen.add(name.casefold())
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise VariantError(f"{where}.weight must be a number > 0")
        weight = float(weight)
        if not math.isfinite(weight) or not 0 < weight <= MAX_WEIGHT:
            raise VariantError(f"{where}.weight must be a number > 0 and at most {MAX_WEIGHT:g}")
        text = item.get("text")
        if not isinstance(text, str):
            raise VariantError(f"{where}.text must be a non-empty string")
        specs.append(VariantSpec(name, text, weight))
    return specs


@dataclass(frozen=True, slots=True)
class Variant:
    """A variant ready to render."""

    name: str
    weight: float
    template: MessageTemplate

    @property
    def destinations(self) -> list[str]:
        return self.template.destinations


def prepare_variants(specs: Sequence[VariantSpec], *, scheme: str = "keep", only_last: bool = False) -> list[Variant]:
    """Each variant's text checked like a campaign's text (links found, at most 1,600 characters)."""
    variants = []
    for i, spec in enumerate(specs):
        try:
            template = prepare_template(spec.text, scheme=scheme, only_last=only_last)
        except CampaignError as error:
            raise VariantError(f"variants[{i}] ({spec.name}): {error}".replace("'text'", "its text")) from None
        variants.append(Variant(spec.name, spec.weight, template))
    return variants


def new_seed() -> str:
    return secrets.token_hex(SEED_BYTES)


class VariantAssigner:
    """Recipient index → variant index, from the campaign's seed and the variants' weights.

    ``bounds[i]`` is the upper end of variant ``i``'s share of [0, 2**64) (a running sum of the
    weights over their ``math.fsum``, times 2**64, rounded); the last is 2**64, so every hash lands
    in exactly one interval. The hashing and the bounds are in Rust (``_core.VariantAssigner``,
    which the renderer and the sink use too); this class checks the arguments for a clear error.
    """

    __slots__ = ("core", "variant_of", "variants_of")

    #: The recipient's variant. The edge calls it on every request of a variant campaign, so it is
    #: the Rust method itself, not a Python method around it.
    variant_of: Callable[[int], int]
    #: The variants of ``count`` consecutive recipients from ``first``.
    variants_of: Callable[[int, int], list[int]]

    def __init__(self, seed: str, weights: Sequence[float]) -> None:
        if not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
            raise VariantError("variant weights must be numbers > 0")
        try:
            key = bytes.fromhex(seed)
        except ValueError:
            raise VariantError("the variant seed must be hex") from None
        if not 1 <= len(key) <= 64:
            raise VariantError("the variant seed must be 1 to 64 bytes")
        self.core = _core.VariantAssigner(key, [float(w) for w in weights])
        self.variant_of = self.core.variant_of
        self.variants_of = self.core.variants_of


def sibling_links(links: int, described: str) -> int | _core.VariantLinks:
    """What the sink needs of a campaign: its number of links (the ``bot:sibling-burst`` rule),
    or for a variant campaign (``described``: ``campaigns.variants``, see :func:`describe`) the
    split with each variant's links, so a recipient is judged by the links of their own message,
    and each variant's name, which every event of the recipient carries (``events.variant``). A
    description that cannot be read falls back to ``links`` (the most any variant has)."""
    if not described:
        return links
    try:
        plan = orjson.loads(described)
        variants = plan["variants"]
        assigner = VariantAssigner(plan["seed"], [float(v["weight"]) for v in variants])
        return _core.VariantLinks(
            assigner.core, [len(v["destinations"]) for v in variants], [str(v["name"]) for v in variants]
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return links


def link_slots(variants: Sequence[Variant]) -> int:
    """Links per recipient in the token range: the most any variant has."""
    return max(len(v.destinations) for v in variants)


def describe(variants: Sequence[Variant], seed: str) -> dict[str, Any]:
    """The variants as the analytics store's ``campaigns.variants`` keeps them (JSON)."""
    return {
        "seed": seed,
        "variants": [
            {"name": v.name, "weight": v.weight, "text": v.template.text, "destinations": v.destinations}
            for v in variants
        ],
    }


@dataclass(frozen=True, slots=True)
class VariantPlan:
    """A variant campaign's texts and seed, as campaign creation uses them."""

    variants: tuple[Variant, ...]
    seed: str

    @classmethod
    def prepare(cls, specs: Sequence[VariantSpec], scheme: str = "keep", only_last: bool = False) -> VariantPlan:
        return cls(tuple(prepare_variants(specs, scheme=scheme, only_last=only_last)), new_seed())

    @property
    def control(self) -> Variant:
        return self.variants[0]

    @property
    def slots(self) -> int:
        return link_slots(self.variants)

    def assigner(self) -> VariantAssigner:
        return VariantAssigner(self.seed, [v.weight for v in self.variants])

    def batches(self, codec: TokenCodec, campaign: CampaignRange) -> MessageBatches:
        """The campaign's messages, rendered in Rust like a one-text campaign's."""
        return MessageBatches(
            self.control.template,
            codec,
            campaign,
            variants=[(v.name, v.template) for v in self.variants],
            assigner=self.assigner().core,
        )

    def routes(self) -> tuple[VariantRoute, ...]:
        return tuple(VariantRoute(v.name, v.weight, tuple(v.destinations)) for v in self.variants)

    def json(self) -> str:
        return orjson.dumps(describe(self.variants, self.seed)).decode()

    def summary(self, batches: MessageBatches) -> list[dict[str, Any]]:
        """Per variant, for the creation answer: name, weight, links and messages."""
        return [
            {"name": v.name, "weight": v.weight, "links": len(v.destinations), "messages": n}
            for v, n in zip(self.variants, batches.per_variant, strict=True)
        ]
