"""Regenerate sample_data/contacts.csv and contacts.parquet (deterministic: same output every time)."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl

FIRST = [
    "Ana",
    "Zoë",
    "José",
    "Björn",
    "Chloé",
    "Åsa",
    "Mei",
    "Nikolai",
    "Renée",
    "Søren",
    "Amélie",
    "Łukasz",
    "Priya",
    "Olumide",
    "Siobhán",
    "Dmitri",
    "Hana",
    "Grace",
    "Mateo",
    "Yūki",
]
LAST = [
    "García",
    "Müller",
    "Nguyen",
    "O'Brien",
    "Smith",
    "Kowalski",
    "Johansson",
    "Dubois",
    "Okafor",
    "Tanaka",
    "Rossi",
    "Svensson",
    "Patel",
    "Novák",
    "Lee",
]
AREAS = ["415", "212", "312", "617", "206"]
CITIES = ["San Francisco", "New York", "Chicago", "Boston", "Seattle"]


def main() -> None:
    rng = random.Random(20261124)
    numbers = [f"{a}555{n:04d}" for a in AREAS for n in range(100, 200)]
    rng.shuffle(numbers)
    rows = []
    for i in range(200):
        area_index = AREAS.index(numbers[i][:3])
        digits = numbers[i]
        style = i % 4
        phone = (
            f"+1{digits}"
            if style in (0, 1)
            else f"1{digits}"
            if style == 2
            else f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
        )
        rows.append(
            {
                "phone": phone,
                "first_name": rng.choice(FIRST),
                "last_name": rng.choice(LAST),
                "city": CITIES[area_index],
                "order_id": f"A-{100000 + i}",
                "order_total": round(rng.uniform(5, 400), 2),
                "visits": rng.randint(1, 40),
            }
        )
    # A few addresses no one can reach, and one contact listed twice.
    rows[17]["phone"] = "555-01"
    rows[58]["phone"] = ""
    rows[101]["phone"] = "not a number"
    rows[144]["phone"] = "+1415555"
    rows[190]["phone"] = rows[3]["phone"]
    rows[190]["first_name"] = rows[3]["first_name"]
    frame = pl.DataFrame(rows)
    here = Path(__file__).parent
    frame.write_csv(here / "contacts.csv")
    frame.write_parquet(here / "contacts.parquet")


if __name__ == "__main__":
    main()
