"""Generate the Kestrel Home demo support-ticket dataset.

Run from the repository root::

    python data/demo/generate.py

The script is deterministic (seeded with ``random.Random(20261121)``) and rewrites exactly these
files, byte for byte:

* ``data/raw/support_tickets.csv``             main batch, with a few deliberate mislabels
* ``data/raw/mislabelled.csv``                 manifest of the deliberate mislabels
* ``data/incoming/support_tickets_batch2.csv`` a later batch of new, correctly labelled messages

All message text is assembled from the hand-written fragments in ``fragments.py``.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from fragments import (
    AMBIGUOUS,
    ANGRY,
    CARDS,
    CARRIERS,
    CITIES,
    CLOSERS,
    COMPANIES,
    COUNTS,
    CURRENCIES,
    DATES,
    DAYS,
    DEVICES,
    ERRORS,
    FILLERS,
    GREETINGS,
    INTENTS,
    LABELS,
    MISSPELLINGS,
    OPENERS,
    PHONE_ENDS,
    PHONE_STARTS,
    PLANS,
    POLITE,
    PRAISE_CLOSERS,
    PRICES,
    PRODUCTS,
    PROMOS,
    RAMBLE,
    RAMBLE_LEADS,
    REVIEW_NEGATIVE,
    REVIEW_POSITIVE,
    SIDE_LEADS,
    SIDE_MENTIONS,
    SIGNOFF_FORMATS,
    SIGNOFF_NAMES,
    TOPIC_LINES,
    VAGUE,
    VERSIONS,
    WEB_FORM_PREFIXES,
    WEEKS,
    WRITTEN_ONLY_MARKERS,
    Intent,
)

LOGGER = logging.getLogger("generate_demo_data")

SEED = 20261121
REPO_ROOT = Path(__file__).resolve().parents[2]
MAIN_PATH = REPO_ROOT / "data" / "raw" / "support_tickets.csv"
MISLABEL_PATH = REPO_ROOT / "data" / "raw" / "mislabelled.csv"
BATCH2_PATH = REPO_ROOT / "data" / "incoming" / "support_tickets_batch2.csv"

COLUMNS = ["id", "text", "label", "channel"]

# Rows per label. Main batch: 1,450 rows; batch 2: 350 rows (same proportions).
MAIN_COUNTS: dict[str, int] = {
    "billing": 425,
    "technical_support": 355,
    "account_access": 245,
    "shipping": 214,
    "product_feedback": 123,
    "security_privacy": 88,
}
BATCH2_COUNTS: dict[str, int] = {
    "billing": 103,
    "technical_support": 86,
    "account_access": 59,
    "shipping": 52,
    "product_feedback": 30,
    "security_privacy": 20,
}
# Deliberately mislabelled rows in the main batch, by true label (30 rows, about 2%).
MISLABEL_COUNTS: dict[str, int] = {
    "billing": 8,
    "technical_support": 7,
    "account_access": 5,
    "shipping": 4,
    "product_feedback": 3,
    "security_privacy": 3,
}

# How often each kind of message is produced.
P_AMBIGUOUS = 0.12
P_VAGUE = 0.04
P_SIDE_MENTION = 0.22
# Privacy reports and feedback tend to say outright what kind of message they are.
P_TOPIC_LINE: dict[str, float] = {
    "billing": 0.25,
    "technical_support": 0.25,
    "account_access": 0.25,
    "shipping": 0.25,
    "product_feedback": 0.45,
    "security_privacy": 0.5,
}
P_TYPO = 0.13
P_NORMALISED_DUPLICATE_OK = 0.15
MAX_ATTEMPTS = 500

CHANNEL_WEIGHTS: dict[str, dict[str, float]] = {
    "billing": {"email": 35, "chat": 25, "web_form": 25, "app_review": 3, "phone_transcript": 12},
    "technical_support": {
        "email": 20,
        "chat": 25,
        "web_form": 15,
        "app_review": 28,
        "phone_transcript": 12,
    },
    "account_access": {
        "email": 20,
        "chat": 35,
        "web_form": 20,
        "app_review": 10,
        "phone_transcript": 15,
    },
    "shipping": {"email": 30, "chat": 30, "web_form": 25, "app_review": 3, "phone_transcript": 12},
    "product_feedback": {
        "email": 15,
        "chat": 10,
        "web_form": 15,
        "app_review": 55,
        "phone_transcript": 5,
    },
    "security_privacy": {
        "email": 45,
        "chat": 15,
        "web_form": 25,
        "app_review": 3,
        "phone_transcript": 12,
    },
}

TONE_WEIGHTS: dict[str, dict[str, float]] = {
    "email": {"polite": 30, "neutral": 25, "angry": 20, "rambling": 20, "terse": 5},
    "chat": {"polite": 10, "neutral": 30, "angry": 15, "rambling": 0, "terse": 45},
    "web_form": {"polite": 20, "neutral": 40, "angry": 20, "rambling": 10, "terse": 10},
    "app_review": {"polite": 10, "neutral": 30, "angry": 30, "rambling": 10, "terse": 20},
    "phone_transcript": {"polite": 10, "neutral": 30, "angry": 20, "rambling": 40, "terse": 0},
}

# Chance of an opening context sentence and how many intent details to add, per tone.
OPENER_P: dict[str, float] = {"polite": 0.35, "neutral": 0.25, "angry": 0.2, "rambling": 0.9}
DETAIL_RANGE: dict[str, tuple[int, int]] = {
    "polite": (0, 2),
    "neutral": (0, 2),
    "angry": (0, 2),
    "rambling": (1, 3),
}
# People reporting security/privacy problems tend to explain what they saw.
MIN_DETAILS: dict[str, int] = {"security_privacy": 1}
CLOSER_P: dict[str, float] = {
    "email": 0.65,
    "web_form": 0.4,
    "chat": 0.2,
    "app_review": 0.05,
    "phone_transcript": 0.0,
}
TERSE_SUFFIXES: tuple[str, ...] = (
    " {order}",
    ", order {order}",
    " pls",
    " asap",
    "??",
    " help",
    " again",
    " - {product}",
    "!!",
)
STUTTER_WORDS = frozenset({"i", "the", "my", "it", "to", "a", "we", "and", "so", "it's"})
PHONE_JOINERS: tuple[str, ...] = ("and", "so", "and uh,", "but")
CHAT_GREETINGS: tuple[str, ...] = ("hi", "hello", "hey", "hi there", "hiya", "hello?")

SLOT_RE = re.compile(r"\{(\w+)\}")
WORD_RE = re.compile(r"^([^\w']*)([\w']+)([^\w']*)$")
CONTRACTION_RE = re.compile(r"(\w)'(\w)")
NON_ALPHA_RE = re.compile(r"[^a-z\s]")
SPACES_RE = re.compile(r"\s+")
NO_LEAD_WORDS = frozenset({"And", "Also", "On", "Plus", "Oh"})
KEEP_CAPITAL = frozenset({"I", "I'm", "I've", "I'd", "I'll", "Kestrel", "PayPal", "Apple"})


@dataclass(frozen=True)
class Ticket:
    """One generated support message plus generation metadata (not written to CSV)."""

    text: str
    label: str
    channel: str
    kind: str  # "intent", "ambiguous" or "vague"
    clear: bool  # unambiguous example of its label (eligible for deliberate mislabelling)
    has_typo: bool


def weighted_choice(rng: random.Random, weights: Mapping[str, float]) -> str:
    """Pick a key of ``weights`` with probability proportional to its value."""
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys], k=1)[0]


def decapitalise(sentence: str) -> str:
    """Lower-case the first letter unless the first word should stay capitalised."""
    if not sentence:
        return sentence
    first = sentence.split(" ", 1)[0]
    if first in KEEP_CAPITAL or (len(first) > 1 and first.isupper()) or first[0].isdigit():
        return sentence
    return sentence[0].lower() + sentence[1:]


def spoken_ok(options: Sequence[str], channel: str) -> Sequence[str]:
    """Drop options that only make sense in writing when the message is a phone call."""
    if channel != "phone_transcript":
        return options
    return [o for o in options if not any(m in o.lower() for m in WRITTEN_ONLY_MARKERS)]


def normalise(text: str) -> str:
    """Lower-case and strip punctuation and digits, for near-duplicate checks."""
    return SPACES_RE.sub(" ", NON_ALPHA_RE.sub(" ", text.lower())).strip()


class SlotFiller:
    """Fills ``{slot}`` placeholders; one message keeps one value per slot."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._values: dict[str, str] = {}

    def fill(self, template: str) -> str:
        return SLOT_RE.sub(lambda match: self._value(match.group(1)), template)

    def _value(self, slot: str) -> str:
        if slot.isupper():  # placeholder inside a shouted (upper-cased) sentence
            return self._value(slot.lower()).upper()
        if slot not in self._values:
            self._values.update(self._make(slot))
        return self._values[slot]

    def _make(self, slot: str) -> dict[str, str]:
        rng = self._rng
        if slot in ("amount", "amount2"):
            currency = rng.choice(CURRENCIES)
            low = rng.choice(PRICES)
            high = low + rng.choice((10.0, 20.0, 30.0, 50.0))
            return {"amount": _money(currency, low), "amount2": _money(currency, high)}
        if slot in ("product", "product2"):
            first, second = rng.sample(PRODUCTS, 2)
            return {"product": first, "product2": second}
        if slot == "order":
            digits = str(rng.randrange(100000, 999999))
            style = rng.randrange(4)
            order = (f"KH-{digits}", f"#{digits}{rng.randrange(10)}", f"KH{digits}", digits)[style]
            return {"order": order}
        if slot == "last4":
            return {"last4": f"{rng.randrange(10000):04d}"}
        simple: dict[str, Sequence[str]] = {
            "plan": PLANS,
            "device": DEVICES,
            "version": VERSIONS,
            "error": ERRORS,
            "carrier": CARRIERS,
            "card": CARDS,
            "city": CITIES,
            "company": COMPANIES,
            "promo": PROMOS,
            "date": DATES,
            "days": DAYS,
            "weeks": WEEKS,
            "n": COUNTS,
        }
        if slot not in simple:
            raise KeyError(f"unknown placeholder {{{slot}}}")
        return {slot: rng.choice(simple[slot])}


def _money(currency: str, value: float) -> str:
    text = f"{value:.2f}"
    if text.endswith(".00"):
        text = text[:-3]
    return f"{currency}{text}"


def add_typos(text: str, rng: random.Random) -> str:
    """Introduce one or two realistic typing mistakes."""
    for _ in range(1 if rng.random() < 0.75 else 2):
        words = text.split(" ")
        known = [i for i, w in enumerate(words) if _bare(w).lower() in MISSPELLINGS]
        if known and rng.random() < 0.6:
            index = rng.choice(known)
            lead, word, trail = _split_word(words[index])
            wrong = rng.choice(MISSPELLINGS[word.lower()])
            if len(word) > 1 and word.isupper():
                wrong = wrong.upper()
            elif word[0].isupper():
                wrong = wrong[0].upper() + wrong[1:]
            words[index] = lead + wrong + trail
        else:
            long_words = [
                i for i, w in enumerate(words) if len(_bare(w)) >= 5 and _bare(w).isalpha()
            ]
            if not long_words:
                continue
            index = rng.choice(long_words)
            lead, word, trail = _split_word(words[index])
            words[index] = lead + _mangle(word, rng) + trail
        text = " ".join(words)
    return text


def _bare(word: str) -> str:
    return _split_word(word)[1]


def _split_word(word: str) -> tuple[str, str, str]:
    match = WORD_RE.match(word)
    if match is None:
        return "", "", word
    return match.group(1), match.group(2), match.group(3)


def _mangle(word: str, rng: random.Random) -> str:
    """Swap two neighbouring letters, drop one, or double one (never the first letter)."""
    position = rng.randrange(1, len(word) - 1)
    operation = rng.randrange(3)
    if operation == 0 and word[position] != word[position + 1]:
        return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    if operation == 1:
        return word[:position] + word[position + 1 :]
    return word[:position] + word[position] + word[position:]


class TicketBuilder:
    """Composes one support message for a given label."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def build(self, label: str) -> Ticket:
        rng = self.rng
        channel = weighted_choice(rng, CHANNEL_WEIGHTS[label])
        roll = rng.random()
        if roll < P_AMBIGUOUS:
            kind, intent = "ambiguous", None
            core = rng.choice(AMBIGUOUS[label])
        elif roll < P_AMBIGUOUS + P_VAGUE:
            kind, intent = "vague", None
            core = rng.choice(VAGUE[label])
        else:
            kind = "intent"
            intents = INTENTS[label]
            intent = rng.choices(intents, weights=[i.weight for i in intents], k=1)[0]
            core = rng.choice(intent.cores)

        tone = weighted_choice(rng, TONE_WEIGHTS[channel])
        positive = intent is not None and intent.positive
        if tone == "angry" and intent is not None and (positive or not intent.complaint):
            tone = "polite" if positive else "neutral"
        if kind == "vague" and tone == "rambling":
            tone = "neutral"
        if kind != "intent" and label == "product_feedback" and tone == "angry":
            tone = "neutral"

        slots = SlotFiller(rng)
        side_mention = False
        if tone == "terse" and intent is not None and (channel != "email" or rng.random() < 0.3):
            parts = [self._terse(intent, channel)]
        elif tone == "terse" or kind == "vague":
            parts = [core]
        else:
            parts, side_mention = self._full(label, channel, tone, core, intent)

        text = self._frame(channel, tone, parts, positive)
        text = slots.fill(text)
        has_typo = False
        if rng.random() < P_TYPO:
            typo_text = add_typos(text, rng)
            has_typo = typo_text != text
            text = typo_text
        text = SPACES_RE.sub(" ", text).strip()
        clear = kind == "intent" and not side_mention
        return Ticket(text, label, channel, kind, clear, has_typo)

    def _terse(self, intent: Intent, channel: str) -> str:
        rng = self.rng
        text = rng.choice(intent.shorts)
        if rng.random() < 0.3:
            suffixes = TERSE_SUFFIXES
            if channel == "app_review":
                suffixes = tuple(x for x in suffixes if "{order}" not in x)
            text += rng.choice(suffixes)
        return text

    def _full(
        self, label: str, channel: str, tone: str, core: str, intent: Intent | None
    ) -> tuple[list[str], bool]:
        rng = self.rng
        short_channel = channel in ("chat", "app_review")
        parts: list[str] = []

        opener_p = OPENER_P[tone] * (0.3 if short_channel else 1.0)
        if rng.random() < opener_p:
            parts.append(rng.choice(spoken_ok(OPENERS, channel)))
        if tone == "rambling" and rng.random() < 0.7:
            parts.append(rng.choice(RAMBLE))
        # Topic lines describe a problem, except for feedback, where they suit every message.
        describes_problem = intent is None or intent.complaint or label == "product_feedback"
        if describes_problem and rng.random() < P_TOPIC_LINE[label] * (0.4 if parts else 1.0):
            parts.append(rng.choice(spoken_ok(TOPIC_LINES[label], channel)))

        if tone == "angry" and rng.random() < 0.08:
            core = core.upper()
        elif tone == "angry" and core.endswith(".") and rng.random() < 0.3:
            core = core[:-1] + rng.choice(("!", "!!", "!!!"))
        if tone == "rambling" and parts and rng.random() < 0.5:
            core = f"{rng.choice(RAMBLE_LEADS)} {decapitalise(core)}"
        parts.append(core)
        core_index = len(parts) - 1

        if intent is not None:
            low, high = DETAIL_RANGE[tone]
            low = max(low, MIN_DETAILS.get(label, 0))
            if short_channel:
                high = max(min(high, 1), low)
            count = min(rng.randint(low, high), len(intent.details))
            parts.extend(rng.sample(intent.details, count))

        side_mention = rng.random() < P_SIDE_MENTION
        if side_mention:
            other = rng.choice([lbl for lbl in LABELS if lbl != label])
            remark = rng.choice(SIDE_MENTIONS[other])
            if remark.split(" ", 1)[0] not in NO_LEAD_WORDS and rng.random() < 0.4:
                remark = f"{rng.choice(SIDE_LEADS)} {decapitalise(remark)}"
            parts.insert(rng.randint(core_index + 1, len(parts)), remark)

        if tone == "angry":
            parts.extend(rng.sample(ANGRY, 1 if rng.random() < 0.7 else 2))
        elif tone == "polite" and rng.random() < 0.4:
            parts.insert(0 if rng.random() < 0.5 else len(parts), rng.choice(POLITE))
        if rng.random() < CLOSER_P[channel]:
            positive = intent is not None and intent.positive
            parts.append(rng.choice(PRAISE_CLOSERS if positive else CLOSERS))
        return parts, side_mention

    def _frame(self, channel: str, tone: str, parts: list[str], positive: bool) -> str:
        rng = self.rng
        if channel in ("email", "web_form", "phone_transcript"):
            parts = [p if p[-1] in ".!?:-" else p + "." for p in parts]
        if channel == "email":
            return self._frame_email(tone, parts)
        if channel == "chat":
            return self._frame_chat(tone, parts)
        if channel == "web_form":
            if rng.random() < 0.35:
                parts = [rng.choice(WEB_FORM_PREFIXES), *parts]
            return " ".join(parts)
        if channel == "app_review":
            if rng.random() < 0.5:
                prefix = rng.choice(REVIEW_POSITIVE if positive else REVIEW_NEGATIVE)
                parts = [prefix, *parts]
            return " ".join(parts)
        return self._frame_phone(parts)

    def _frame_email(self, tone: str, parts: list[str]) -> str:
        rng = self.rng
        if rng.random() < (0.5 if tone == "terse" else 0.8):
            greeting = rng.choice(GREETINGS)
            first = decapitalise(parts[0]) if rng.random() < 0.8 else parts[0]
            parts = [greeting, first, *parts[1:]]
        if rng.random() < 0.55:
            name = rng.choice(SIGNOFF_NAMES)
            thanked = parts[-1].startswith(("Thank", "Cheers", "Many thanks"))
            signoff = rng.choice(("{name}", "- {name}") if thanked else SIGNOFF_FORMATS)
            parts = [*parts, signoff.format(name=name)]
        return " ".join(parts)

    def _frame_chat(self, tone: str, parts: list[str]) -> str:
        rng = self.rng
        text = " ".join(parts)
        if rng.random() < 0.25:
            text = f"{rng.choice(CHAT_GREETINGS)} {decapitalise(text)}"
        if tone == "terse" or rng.random() < 0.5:
            text = text.lower()
        if rng.random() < 0.35:
            text = CONTRACTION_RE.sub(r"\1\2", text)
        if rng.random() < 0.2:
            text = re.sub(r"\bplease\b", "pls", text, flags=re.IGNORECASE)
        if text.endswith(".") and rng.random() < 0.7:
            text = text[:-1]
        return text

    def _frame_phone(self, parts: list[str]) -> str:
        rng = self.rng
        start = rng.choice(PHONE_STARTS).split(" ")
        words = decapitalise(" ".join(parts)).split(" ")
        spoken: list[str] = list(start)
        lower_next = False
        for position, word in enumerate(words):
            if lower_next:
                word, lower_next = decapitalise(word), False
            if position == len(words) - 1:
                spoken.append(word)
            elif word.endswith(",") and rng.random() < 0.3:
                spoken.extend([word, rng.choice(FILLERS)])
            elif word.endswith(".") and rng.random() < 0.2:
                spoken.extend([word[:-1] + ",", rng.choice(PHONE_JOINERS)])
                lower_next = True
            else:
                spoken.append(word)
        repeatable = [i for i, w in enumerate(spoken) if i > 1 and w.lower() in STUTTER_WORDS]
        if repeatable and rng.random() < 0.3:
            position = rng.choice(repeatable)
            spoken.insert(position, spoken[position])
        if rng.random() < 0.5:
            spoken.append(rng.choice(PHONE_ENDS))
        text = " ".join(spoken)
        return text.lower() if rng.random() < 0.6 else text


def generate_batch(
    builder: TicketBuilder,
    counts: Mapping[str, int],
    seen_texts: set[str],
    seen_normalised: set[str],
) -> list[Ticket]:
    """Generate ``counts[label]`` unique tickets per label, in shuffled label order."""
    rng = builder.rng
    labels = [label for label, count in counts.items() for _ in range(count)]
    rng.shuffle(labels)
    tickets: list[Ticket] = []
    for label in labels:
        for _ in range(MAX_ATTEMPTS):
            ticket = builder.build(label)
            if ticket.text in seen_texts:
                continue
            norm = normalise(ticket.text)
            if norm in seen_normalised and rng.random() > P_NORMALISED_DUPLICATE_OK:
                continue
            break
        else:
            raise RuntimeError(f"could not generate a unique {label} message")
        seen_texts.add(ticket.text)
        seen_normalised.add(norm)
        tickets.append(ticket)
    return tickets


def choose_mislabels(rng: random.Random, tickets: Sequence[Ticket]) -> dict[int, tuple[str, str]]:
    """Pick clear examples per true label and give each a wrong label.

    Returns ``{row_index: (given_label, true_label)}``.
    """
    chosen: dict[int, tuple[str, str]] = {}
    for true_label, count in MISLABEL_COUNTS.items():
        candidates = [
            index
            for index, ticket in enumerate(tickets)
            if ticket.label == true_label and ticket.clear and len(ticket.text.split()) >= 8
        ]
        for index in sorted(rng.sample(candidates, count)):
            # Annotators slip towards the common labels, so weight by class size.
            others = [label for label in LABELS if label != true_label]
            given = rng.choices(others, weights=[MAIN_COUNTS[o] for o in others], k=1)[0]
            chosen[index] = (given, true_label)
    return dict(sorted(chosen.items()))


def build_datasets() -> tuple[list[Ticket], dict[int, tuple[str, str]], list[Ticket]]:
    """Generate main tickets, the mislabel mapping for them, and the second batch."""
    rng = random.Random(SEED)
    builder = TicketBuilder(rng)
    seen_texts: set[str] = set()
    seen_normalised: set[str] = set()
    main = generate_batch(builder, MAIN_COUNTS, seen_texts, seen_normalised)
    mislabels = choose_mislabels(rng, main)
    batch2 = generate_batch(builder, BATCH2_COUNTS, seen_texts, seen_normalised)
    return main, mislabels, batch2


def to_frames(
    main: Sequence[Ticket], mislabels: Mapping[int, tuple[str, str]], batch2: Sequence[Ticket]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Turn generated tickets into the three output tables."""
    main_rows = []
    for index, ticket in enumerate(main):
        label = mislabels[index][0] if index in mislabels else ticket.label
        main_rows.append([f"msg-{index + 1:05d}", ticket.text, label, ticket.channel])
    offset = len(main)
    batch2_rows = [
        [f"msg-{offset + index + 1:05d}", ticket.text, ticket.label, ticket.channel]
        for index, ticket in enumerate(batch2)
    ]
    manifest_rows = [
        [f"msg-{index + 1:05d}", given, true] for index, (given, true) in mislabels.items()
    ]
    return (
        pd.DataFrame(main_rows, columns=COLUMNS),
        pd.DataFrame(manifest_rows, columns=["id", "given_label", "true_label"]),
        pd.DataFrame(batch2_rows, columns=COLUMNS),
    )


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
    LOGGER.info("wrote %d rows to %s", len(frame), path.relative_to(REPO_ROOT))


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main_tickets, mislabels, batch2_tickets = build_datasets()
    main_frame, manifest, batch2_frame = to_frames(main_tickets, mislabels, batch2_tickets)
    write_csv(main_frame, MAIN_PATH)
    write_csv(manifest, MISLABEL_PATH)
    write_csv(batch2_frame, BATCH2_PATH)
    for name, frame in (("main", main_frame), ("batch 2", batch2_frame)):
        counts = Counter(frame["label"])
        LOGGER.info("%s label counts: %s", name, {label: counts[label] for label in LABELS})


if __name__ == "__main__":
    main()
