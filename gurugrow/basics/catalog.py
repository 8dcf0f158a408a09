"""Recommended sets: ``offerCode`` → bundle article, title and components.

The bot sends only ``offerCode``. ``bundle_article`` is the article of the bundle product
in RetailCRM's catalog (the order carries that real offer, so RetailCRM prices it);
``components`` only feed the preview text. A shop edits this table to add or change sets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecommendedSet:
    offer_code: str
    bundle_article: str
    title: str
    components: tuple[str, ...]


RECOMMENDED_SETS: dict[str, RecommendedSet] = {s.offer_code: s for s in (
    RecommendedSet(
        offer_code="male_hairloss_basic",
        bundle_article="SET-MALE-BASIC",
        title="Базовый набор против выпадения волос для мужчин",
        components=("Миноксидил 5%, 60 мл", "Шампунь с кетоконазолом", "Биотин, 60 капсул"),
    ),
    RecommendedSet(
        offer_code="female_hairloss_basic",
        bundle_article="SET-FEMALE-BASIC",
        title="Базовый набор против выпадения волос для женщин",
        components=("Миноксидил 2%, 60 мл", "Мягкий укрепляющий шампунь"),
    ),
    RecommendedSet(
        # Its bundle is missing from the catalog on purpose in the sandbox: shows that
        # no free-form order is ever created.
        offer_code="beard_growth",
        bundle_article="SET-BEARD-GROWTH",
        title="Набор для роста бороды",
        components=("Миноксидил 5%, 60 мл", "Дермароллер 0,5 мм"),
    ),
)}


def find_set(offer_code: str | None) -> RecommendedSet | None:
    """The set of ``offer_code`` (case-insensitive), or None."""
    return RECOMMENDED_SETS.get((offer_code or "").strip().lower())
