"""Generate RecScope's synthetic demo dataset: a fictional book catalogue and its readers.

Run ``python data/generate_demo.py`` to rewrite ``interactions.csv``, ``items.csv`` and
``user_edges.csv`` next to this script (``--out DIR`` writes elsewhere). The seed is fixed, so
the output is identical byte for byte on every run; ``tests/test_demo_data.py`` checks that.

Generative story (see ``data/README.md``):

1. Twelve latent *topics* (space, magic, crime, ...) and two *style* axes (tone: dark to light,
   pace: slow to fast).
2. Each book gets a sparse topic mixture, a style point, a quality and a power-law popularity.
   Its category, tags, title and 2-4 sentence description are drawn from vocabularies tied to
   those latent values, so the metadata and the text carry real signal about who reads it.
   About 5% of books are never read (cold items).
3. Each reader gets a topic mixture (a quarter of them close to a single topic), style
   preferences, an activity level and an active period within the two years covered.
4. Readers pick books with probability proportional to popularity times taste affinity
   (sampling without replacement); ratings 1-5 rise with affinity and book quality.
5. Friendships link readers with similar topic mixtures more often than chance.

Only numpy (random numbers) and pandas (CSV writing) are used. Every value written is an integer
or a string, so no float formatting can vary between platforms. The topics' vocabularies (titles,
protagonists, settings, conflicts ...) are data, read from ``demo_topics.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240617
NUM_USERS = 1000
NUM_ITEMS = 1500
COLD_FRACTION = 0.05
TARGET_INTERACTIONS = 70_000
START_TIME = 1_672_531_200  # 2023-01-01T00:00:00Z
SPAN_SECONDS = 730 * 86_400  # two years
DAY = 86_400

# ---------------------------------------------------------------------------------- vocabulary
CATEGORIES = [
    "Science Fiction", "Fantasy", "Mystery", "Thriller", "Romance", "Historical Fiction",
    "Horror", "Literary Fiction", "Young Adult", "Adventure", "Comedy", "Dystopian",
]


@dataclass(frozen=True)
class Topic:
    """Vocabulary of one latent topic; every phrase is singular third person.

    ``style`` is the topic's typical (tone, pace): horror leans dark, spy novels lean fast.
    """

    name: str
    style: tuple[float, float]
    categories: dict[str, float]
    tags: tuple[str, ...]
    title_adjectives: tuple[str, ...]
    title_nouns: tuple[str, ...]
    title_objects: tuple[str, ...]
    protagonists: tuple[str, ...]
    settings: tuple[str, ...]
    conflicts: tuple[str, ...]
    hooks: tuple[str, ...]
    themes: tuple[str, ...]

    @classmethod
    def from_json(cls, entry: dict) -> Topic:
        """A topic from its entry in :data:`TOPICS_FILE` (lists become tuples; a missing or
        unknown key is a TypeError)."""
        return cls(**{key: value if key in ("name", "categories") else tuple(value)
                      for key, value in entry.items()})


#: The twelve topics' vocabularies (data, not code: edit them there).
TOPICS_FILE = Path(__file__).resolve().parent / "demo_topics.json"
TOPICS: tuple[Topic, ...] = tuple(
    Topic.from_json(entry) for entry in json.loads(TOPICS_FILE.read_text(encoding="utf-8")))


# Style vocabulary: axis 0 is tone (negative = dark, positive = light),
# axis 1 is pace (negative = slow, positive = fast).
TONE_DARK = ("bleak", "haunting", "unsettling", "brooding", "unflinching", "melancholy")
TONE_LIGHT = ("warm", "witty", "hopeful", "charming", "tender", "playful")
PACE_SLOW = ("meditative", "slow-burning", "lyrical", "quiet", "contemplative",
             "richly detailed")
PACE_FAST = ("propulsive", "breakneck", "twisty", "gripping", "action-packed", "relentless")
NEUTRAL = ("thoughtful", "absorbing", "well-crafted", "engaging", "assured", "ambitious")
STYLE_TAGS = ("dark", "feel-good", "slow-paced", "fast-paced", "atmospheric", "humorous")
GENERIC_TAGS = ("debut", "award-winner")

OPENING_TEMPLATES = (
    "{Setting}, {protagonist} {conflict}.",
    "{Protagonist} {conflict}.",
    "Set {setting}, this is the story of {protagonist} who {conflict}.",
)
MIDDLE_TEMPLATES = (
    "What begins as {hook_a} slowly turns into {hook_b}.",
    "Along the way, {hook_b} forces impossible choices.",
    "The plot weaves {hook_a} together with {hook_b}.",
    "Soon {hook_b} changes everything.",
)
STYLE_TEMPLATES = (
    "{Tone} and {pace}, it is a story about {theme_a} and {theme_b}.",
    "{a_tone}, {pace} novel about {theme_a}.",
    "The writing is {tone} and {pace}, with {theme_a} at its heart.",
    "At once {tone} and {pace}, the book explores {theme_a} and {theme_b}.",
)
CLOSING_SENTENCES = (
    "The first book in a planned trilogy.",
    "Told in alternating perspectives.",
    "Told through letters, diary entries and news clippings.",
    "Critics have praised its memorable characters.",
    "Critics have praised its sharp dialogue.",
    "Critics have praised its surprising ending.",
    "Readers single out its emotional depth.",
    "Readers single out its clever structure.",
    "A perfect choice for a long weekend.",
)
DEBUT_SENTENCE = "A debut that announced a major new voice."
AWARD_SENTENCE = "Winner of a national book prize."


# ---------------------------------------------------------------------------------- helpers
def _gumbel_top_k(rng: np.random.Generator, log_weights: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` draws without replacement, proportional to ``exp(log_weights)``."""
    keys = log_weights + rng.gumbel(size=log_weights.shape)
    return np.argsort(-keys, kind="stable")[:k]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _with_article(word: str) -> str:
    return f"{'An' if word[0].lower() in 'aeiou' else 'A'} {word}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _style_word(rng: np.random.Generator, value: float, negative: tuple[str, ...],
                positive: tuple[str, ...]) -> str:
    # Weak styles read neutral, so only clear style positions leave a trace in the text.
    if value < -0.4:
        return _pick(rng, negative)
    if value > 0.4:
        return _pick(rng, positive)
    return _pick(rng, NEUTRAL)


# ---------------------------------------------------------------------------------- items
@dataclass
class LatentItems:
    """Latent item variables (never written; they drive every observable)."""

    topics: np.ndarray  # [I, K] topic mixture, rows sum to 1
    style: np.ndarray  # [I, 2] tone, pace
    quality: np.ndarray  # [I]
    log_popularity: np.ndarray  # [I], -inf for cold items
    release_time: np.ndarray  # [I] epoch seconds


def _sample_latent_items(rng: np.random.Generator) -> LatentItems:
    num_topics = len(TOPICS)
    # Topics differ in size (some genres are simply bigger), items are mostly one or two topics.
    prevalence = rng.dirichlet(np.full(num_topics, 6.0))
    topics = rng.dirichlet(0.2 * num_topics * prevalence, size=NUM_ITEMS)
    typical_style = np.array([topic.style for topic in TOPICS])
    style = topics @ typical_style + rng.normal(0.0, 0.8, size=(NUM_ITEMS, 2))
    quality = rng.normal(0.0, 1.0, size=NUM_ITEMS)
    # Power-law popularity: a Zipf curve over a random rank order, nudged by quality.
    ranks = rng.permutation(NUM_ITEMS) + 1.0
    log_popularity = -1.1 * np.log(ranks + 5.0) + 0.25 * quality
    cold = rng.choice(NUM_ITEMS, size=round(COLD_FRACTION * NUM_ITEMS), replace=False)
    log_popularity[cold] = -np.inf
    # Most of the catalogue predates the log; a fifth is released during it.
    new = rng.random(NUM_ITEMS) < 0.2
    release_time = np.where(
        new,
        START_TIME + rng.integers(0, SPAN_SECONDS - 60 * DAY, size=NUM_ITEMS),
        START_TIME - rng.integers(30 * DAY, 20 * 365 * DAY, size=NUM_ITEMS),
    )
    return LatentItems(topics, style, quality, log_popularity, release_time.astype(np.int64))


def _item_category(rng: np.random.Generator, topic: Topic, style: np.ndarray) -> str:
    names = list(topic.categories)
    probs = np.array([topic.categories[n] for n in names])
    if style[0] > 1.3 and "Comedy" not in topic.categories:
        # Very light books get shelved as comedy fairly often, whatever their subject.
        names.append("Comedy")
        probs = np.append(0.7 * probs, 0.3)
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def _item_tags(rng: np.random.Generator, topics: np.ndarray, style: np.ndarray,
               debut: bool, award: bool) -> list[str]:
    names: list[str] = []
    weights: list[float] = []
    # Squared weights: a book is tagged mostly for what it is mainly about.
    emphasis = topics**2 / float((topics**2).sum())
    for k, topic in enumerate(TOPICS):
        for tag in topic.tags:
            names.append(tag)
            weights.append(emphasis[k] / len(topic.tags))
    tone, pace = style
    style_weights = (max(0.0, -tone - 0.3), max(0.0, tone - 0.3), max(0.0, -pace - 0.3),
                     max(0.0, pace - 0.3), max(0.0, -0.5 * (tone + pace) - 0.5),
                     max(0.0, tone - 1.0))
    names += list(STYLE_TAGS)
    weights += [0.25 * w for w in style_weights]
    weight = np.asarray(weights)
    # Only clearly relevant tags are candidates; one in ten books also gets a stray tag, as
    # user-applied tags do.
    relevant = np.flatnonzero(weight >= 0.04)
    if len(relevant) == 0:
        relevant = np.array([int(np.argmax(weight))])
    count = min(1 + int(rng.binomial(4, 0.45)), len(relevant))
    picked = relevant[_gumbel_top_k(rng, np.log(weight[relevant]), count)]
    chosen = [names[j] for j in picked]
    if rng.random() < 0.1 and len(chosen) < 5:
        stray = names[int(rng.integers(len(names)))]
        if stray not in chosen:
            chosen.append(stray)
    # Generic tags describe the book's history, not its content, and add a little noise.
    if debut and len(chosen) < 5:
        chosen.append("debut")
    if award and len(chosen) < 5:
        chosen.append("award-winner")
    return chosen


def _item_title(rng: np.random.Generator, topic: Topic, taken: set[str]) -> str:
    title = ""
    for _ in range(50):
        a = _pick(rng, topic.title_adjectives)
        n = _pick(rng, topic.title_nouns)
        o = _pick(rng, topic.title_objects)
        pattern = int(rng.integers(6))
        title = (f"The {a} {n}", f"{a} {n}", f"The {n} of {o}", f"{n} of {o}",
                 f"The Last {n}", f"{_with_article(n)} in {o}")[pattern]
        if title not in taken:
            break
    taken.add(title)
    return title


def _item_description(rng: np.random.Generator, topics: np.ndarray, style: np.ndarray,
                      debut: bool, award: bool) -> str:
    order = np.argsort(-topics, kind="stable")
    main = TOPICS[order[0]]
    # A strong second topic shows up in the plot sentence, so mixed books read mixed.
    second = TOPICS[order[1]] if topics[order[1]] >= 0.15 else main
    sentences = []
    setting = _pick(rng, main.settings)
    protagonist = _pick(rng, main.protagonists)
    # "the story of X who Y" reads badly when X already has a relative clause.
    openings = OPENING_TEMPLATES if " who " not in protagonist else OPENING_TEMPLATES[:2]
    opening = _pick(rng, openings)
    sentences.append(opening.format(Setting=setting, setting=_lower_first(setting),
                                    protagonist=protagonist,
                                    Protagonist=_capitalize(protagonist),
                                    conflict=_pick(rng, main.conflicts)))
    include_middle = rng.random() < 0.75
    include_style = rng.random() < 0.8 or not include_middle
    include_closing = rng.random() < 0.4 or debut or award
    if include_middle:
        hook_a = _pick(rng, main.hooks)
        hook_b = _pick(rng, second.hooks)
        while hook_b == hook_a:
            hook_b = _pick(rng, second.hooks)
        sentences.append(_capitalize(_pick(rng, MIDDLE_TEMPLATES).format(hook_a=hook_a,
                                                                         hook_b=hook_b)))
    if include_style:
        tone = _style_word(rng, style[0], TONE_DARK, TONE_LIGHT)
        pace = _style_word(rng, style[1], PACE_SLOW, PACE_FAST)
        if pace == tone:
            pace = _pick(rng, NEUTRAL[:3]) if tone not in NEUTRAL[:3] else "memorable"
        theme_a = _pick(rng, main.themes)
        theme_b = _pick(rng, second.themes)
        while theme_b == theme_a:
            theme_b = _pick(rng, main.themes)
        sentences.append(_pick(rng, STYLE_TEMPLATES).format(
            Tone=_capitalize(tone), tone=tone, a_tone=_with_article(tone), pace=pace,
            theme_a=theme_a, theme_b=theme_b))
    if include_closing:
        if award:
            sentences.append(AWARD_SENTENCE)
        elif debut:
            sentences.append(DEBUT_SENTENCE)
        else:
            sentences.append(_pick(rng, CLOSING_SENTENCES))
    return " ".join(sentences)


def _build_items(rng: np.random.Generator, latent: LatentItems) -> pd.DataFrame:
    rows = []
    taken: set[str] = set()
    debut = rng.random(NUM_ITEMS) < 0.08
    award = rng.random(NUM_ITEMS) < 0.05
    for i in range(NUM_ITEMS):
        topics, style = latent.topics[i], latent.style[i]
        main = TOPICS[int(np.argmax(topics))]
        rows.append({
            "item_id": f"i{i + 1:04d}",
            "title": _item_title(rng, main, taken),
            "description": _item_description(rng, topics, style, bool(debut[i]), bool(award[i])),
            "category": _item_category(rng, main, style),
            "tags": "|".join(_item_tags(rng, topics, style, bool(debut[i]), bool(award[i]))),
        })
    return pd.DataFrame(rows, columns=["item_id", "title", "description", "category", "tags"])


# ---------------------------------------------------------------------------------- users
@dataclass
class LatentUsers:
    """Latent user variables (never written)."""

    topics: np.ndarray  # [U, K]
    style: np.ndarray  # [U, 2]
    bias: np.ndarray  # [U] rating leniency
    activity: np.ndarray  # [U] number of interactions
    start: np.ndarray  # [U] first active second
    end: np.ndarray  # [U] last active second


def _sample_latent_users(rng: np.random.Generator) -> LatentUsers:
    num_topics = len(TOPICS)
    focused = rng.random(NUM_USERS) < 0.25
    broad = rng.dirichlet(np.full(num_topics, 0.3), size=NUM_USERS)
    anchor = np.eye(num_topics)[rng.integers(num_topics, size=NUM_USERS)]
    near_one = 0.85 * anchor + 0.15 * rng.dirichlet(np.ones(num_topics), size=NUM_USERS)
    topics = np.where(focused[:, None], near_one, broad)
    style = rng.normal(0.0, 0.8, size=(NUM_USERS, 2))
    bias = rng.normal(0.0, 0.4, size=NUM_USERS)
    raw = np.exp(rng.normal(np.log(50.0), 0.85, size=NUM_USERS))
    activity = np.clip(np.round(raw * TARGET_INTERACTIONS / raw.sum()), 10, 600).astype(np.int64)
    start = START_TIME + rng.integers(0, int(0.85 * SPAN_SECONDS), size=NUM_USERS)
    duration = rng.integers(45 * DAY, SPAN_SECONDS, size=NUM_USERS)
    end = np.minimum(start + duration, START_TIME + SPAN_SECONDS - 1)
    return LatentUsers(topics, style, bias, activity, start.astype(np.int64),
                       end.astype(np.int64))


def _affinity(users: LatentUsers, items: LatentItems) -> np.ndarray:
    """Taste match [U, I]: log topic overlap plus style agreement (popularity excluded)."""
    overlap = users.topics @ items.topics.T
    return 2.5 * np.log(overlap + 0.01) + 0.6 * (users.style @ items.style.T)


def _build_interactions(rng: np.random.Generator, users: LatentUsers, items: LatentItems,
                        affinity: np.ndarray) -> pd.DataFrame:
    # Standardise affinity over plausible pairs so the rating scale does not depend on sizes.
    centre, scale = float(affinity.mean()), float(affinity.std())
    user_col, item_col, rating_col, time_col = [], [], [], []
    for u in range(NUM_USERS):
        eligible = items.release_time < users.end[u] - DAY
        log_w = np.where(eligible, affinity[u] + items.log_popularity, -np.inf)
        count = min(int(users.activity[u]), int(np.isfinite(log_w).sum()))
        chosen = np.sort(_gumbel_top_k(rng, log_w, count))
        z = (affinity[u, chosen] - centre) / scale
        latent = (2.7 + 0.75 * z + 0.35 * items.quality[chosen] + users.bias[u]
                  + rng.normal(0.0, 0.7, size=count))
        ratings = np.clip(np.rint(latent), 1, 5).astype(np.int64)
        lo = np.maximum(users.start[u], items.release_time[chosen])
        hi = users.end[u]
        times = lo + np.floor(rng.random(count) * (hi - lo)).astype(np.int64)
        user_col.append(np.full(count, u))
        item_col.append(chosen)
        rating_col.append(ratings)
        time_col.append(times)
    frame = pd.DataFrame({
        "u": np.concatenate(user_col), "i": np.concatenate(item_col),
        "rating": np.concatenate(rating_col), "timestamp": np.concatenate(time_col),
    })
    frame = frame.sort_values(["u", "timestamp", "i"], kind="stable").reset_index(drop=True)
    return pd.DataFrame({
        "user_id": [f"u{u + 1:04d}" for u in frame["u"]],
        "item_id": [f"i{i + 1:04d}" for i in frame["i"]],
        "rating": frame["rating"].astype(np.int64),
        "timestamp": frame["timestamp"].astype(np.int64),
    })


def _build_user_edges(rng: np.random.Generator, users: LatentUsers) -> pd.DataFrame:
    norm = users.topics / np.linalg.norm(users.topics, axis=1, keepdims=True)
    similarity = norm @ norm.T
    # Over-dispersed friend counts: many readers have a few friends, some have none.
    wanted = rng.negative_binomial(1.2, 1.2 / (1.2 + 3.2), size=NUM_USERS)
    pairs: set[tuple[int, int]] = set()
    for u in range(NUM_USERS):
        k = int(min(wanted[u], 40))
        if k == 0:
            continue
        log_w = 8.0 * similarity[u]
        log_w[u] = -np.inf
        for v in _gumbel_top_k(rng, log_w, k):
            pairs.add((min(u, int(v)), max(u, int(v))))
    ordered = sorted(pairs)
    return pd.DataFrame({
        "user_id": [f"u{a + 1:04d}" for a, _ in ordered],
        "friend_id": [f"u{b + 1:04d}" for _, b in ordered],
    })


# ---------------------------------------------------------------------------------- entry
def generate(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Generate the demo tables.

    Args:
        seed (int): Seed of the single :class:`numpy.random.Generator` that drives
            everything. (default: :obj:`SEED`)

    Returns:
        dict[str, pandas.DataFrame]: ``{"interactions": ..., "items": ..., "user_edges": ...}``
        with the columns written to the CSV files of the same names.
    """
    rng = np.random.default_rng(seed)
    latent_items = _sample_latent_items(rng)
    latent_users = _sample_latent_users(rng)
    items = _build_items(rng, latent_items)
    affinity = _affinity(latent_users, latent_items)
    interactions = _build_interactions(rng, latent_users, latent_items, affinity)
    user_edges = _build_user_edges(rng, latent_users)
    return {"interactions": interactions, "items": items, "user_edges": user_edges}


def write(out_dir: Path, seed: int = SEED) -> list[Path]:
    """Generate the tables and write them as UTF-8 CSV files with ``\\n`` line endings.

    Args:
        out_dir (pathlib.Path): Target folder (created if missing).
        seed (int): See :func:`generate`. (default: :obj:`SEED`)

    Returns:
        list[pathlib.Path]: The files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in generate(seed).items():
        path = out_dir / f"{name}.csv"
        frame.to_csv(path, index=False, lineterminator="\n", encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write the CSV files to (default: next to this script)")
    parser.add_argument("--seed", type=int, default=SEED,
                        help=f"random seed (default: {SEED}; the shipped files use the default)")
    args = parser.parse_args(argv)
    for path in write(args.out, args.seed):
        print(f"wrote {path} ({sum(1 for _ in path.open(encoding='utf-8')) - 1} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
