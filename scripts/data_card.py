"""Print the figures of the labelled-data card: counts per label and split, co-occurrence, sources.

Usage: python scripts/data_card.py [PATH ...]   (default: data/labels)

Output is Markdown, pasted into data/labels/README.md between the FIGURES markers;
`python scripts/data_card.py --check` exits 1 if the card's figures differ from the data.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

from toolkit.labels import check_stories, load_examples

CARD = Path("data/labels/README.md")
BEGIN, END = "<!-- FIGURES:BEGIN -->", "<!-- FIGURES:END -->"


def figures(paths: list[Path]) -> str:
    examples, schema, problems = load_examples(paths)
    problems += check_stories(examples)
    splits = ["train", "dev", "test"]
    lines = [f"Passages: **{len(examples)}** in {len({e.story for e in examples})} stories "
             f"({len(problems)} validation problems).", ""]
    by_file = Counter(Path(e.where.rsplit(":", 1)[0]).name for e in examples)
    lines += ["| file | passages |", "|---|---|"] + [f"| {f} | {n} |" for f, n in sorted(by_file.items())] + [""]
    for name, task in schema.tasks.items():
        lines += [f"**{name}** ({task.kind}-label)", "", "| label | " + " | ".join(splits) + " | all | share |",
                  "|---" * (len(splits) + 3) + "|"]
        for label in task.labels:
            counts = [sum(1 for e in examples if e.split == s and label in _values(e.labels.get(name)))
                      for s in splits]
            total = sum(1 for e in examples if label in _values(e.labels.get(name)))
            lines.append(f"| {label} | " + " | ".join(map(str, counts)) + f" | {total} | {total / len(examples):.1%} |")
        lines.append("")
    contact = [set(_values(e.labels.get("contact_type"))) for e in examples if "contact_type" in e.labels]
    if contact:
        pairs = Counter(p for labels in contact for p in combinations(sorted(labels), 2))
        multi = sum(1 for labels in contact if len(labels) > 1)
        lines += [f"Co-occurring contact labels ({multi} passages carry more than one):", "",
                  "| pair | passages |", "|---|---|"]
        lines += [f"| {a} + {b} | {n} |" for (a, b), n in pairs.most_common()] + [""]
    lines += parties_and_roles(examples)
    split_counts = Counter(e.split or "(none)" for e in examples)
    lines.append("Passages per split: " + ", ".join(f"{s} {split_counts.get(s, 0)}" for s in splits) + ".")
    sources = Counter("seed article" if e.source.startswith("seed article") else e.source.split(" (")[0]
                      for e in examples)
    lines += ["", "Registers (`source` field, top 12): " + ", ".join(f"{s} {n}" for s, n in sources.most_common(12)) + "."]
    return "\n".join(lines)


# Parties: a small gazetteer of states and organisations, each with the forms news copy uses for it.
# Matching is by whole word; a passage "names" every party one of whose forms it contains.
PARTIES = {
    "United States": ["United States", "U.S.", "US", "American", "Washington", "Pentagon"],
    "Russia": ["Russia", "Russian", "Moscow", "Kremlin"], "China": ["China", "Chinese", "Beijing", "PLA"],
    "Taiwan": ["Taiwan", "Taipei"], "Japan": ["Japan", "Japanese", "Tokyo"],
    "South Korea": ["South Korea", "South Korean", "Seoul"], "North Korea": ["North Korea", "North Korean",
                                                                           "Pyongyang", "DPRK"],
    "India": ["India", "Indian", "New Delhi", "Delhi"], "Pakistan": ["Pakistan", "Pakistani", "Islamabad"],
    "Afghanistan": ["Afghanistan", "Afghan", "Kabul", "Taliban"], "Bangladesh": ["Bangladesh", "Dhaka"],
    "Sri Lanka": ["Sri Lanka", "Colombo"], "Nepal": ["Nepal", "Kathmandu"], "Myanmar": ["Myanmar", "Naypyidaw"],
    "Philippines": ["Philippines", "Philippine", "Manila"], "Vietnam": ["Vietnam", "Vietnamese", "Hanoi"],
    "Indonesia": ["Indonesia", "Indonesian", "Jakarta"], "Australia": ["Australia", "Australian", "Canberra"],
    "Iran": ["Iran", "Iranian", "Tehran"], "Israel": ["Israel", "Israeli"], "Turkey": ["Turkey", "Turkish",
                                                                                        "Ankara", "Türkiye"],
    "Saudi Arabia": ["Saudi", "Riyadh"], "Qatar": ["Qatar", "Qatari", "Doha"], "Egypt": ["Egypt", "Egyptian",
                                                                                           "Cairo"],
    "Iraq": ["Iraq", "Iraqi", "Baghdad"], "Syria": ["Syria", "Syrian", "Damascus"], "Lebanon": ["Lebanon",
                                                                                                 "Lebanese"],
    "Hezbollah": ["Hezbollah"], "Hamas": ["Hamas"], "Houthis": ["Houthi", "Houthis"], "Yemen": ["Yemen",
                                                                                                 "Yemeni"],
    "Oman": ["Oman", "Omani", "Muscat"], "UAE": ["UAE", "Emirati", "Abu Dhabi"], "Jordan": ["Jordan", "Jordanian"],
    "Ukraine": ["Ukraine", "Ukrainian", "Kyiv"], "Belarus": ["Belarus", "Minsk"], "Poland": ["Poland", "Polish",
                                                                                            "Warsaw"],
    "Germany": ["Germany", "German", "Berlin"], "France": ["France", "French", "Paris"],
    "United Kingdom": ["Britain", "British", "United Kingdom", "UK", "London"], "Italy": ["Italy", "Italian",
                                                                                           "Rome"],
    "Greece": ["Greece", "Greek", "Athens"], "Serbia": ["Serbia", "Serbian", "Belgrade"],
    "Kosovo": ["Kosovo", "Pristina"], "Armenia": ["Armenia", "Armenian", "Yerevan"],
    "Azerbaijan": ["Azerbaijan", "Azerbaijani", "Baku"], "Georgia": ["Tbilisi"],
    "Moldova": ["Moldova", "Chisinau"], "Hungary": ["Hungary", "Hungarian", "Budapest"],
    "Baltic states": ["Estonia", "Latvia", "Lithuania", "Estonian", "Latvian", "Lithuanian"],
    "Nordic states": ["Sweden", "Finland", "Norway", "Denmark", "Swedish", "Finnish", "Norwegian", "Danish"],
    "Ethiopia": ["Ethiopia", "Ethiopian", "Addis Ababa"], "Eritrea": ["Eritrea", "Eritrean"],
    "Sudan": ["Sudan", "Sudanese", "Khartoum", "RSF"], "South Sudan": ["South Sudan", "Juba"],
    "Somalia": ["Somalia", "Somali", "Mogadishu", "al-Shabaab"], "Kenya": ["Kenya", "Kenyan", "Nairobi"],
    "DR Congo": ["DR Congo", "Congolese", "Kinshasa", "M23"], "Rwanda": ["Rwanda", "Rwandan", "Kigali"],
    "Nigeria": ["Nigeria", "Nigerian", "Abuja"], "Mali": ["Mali", "Malian", "Bamako"],
    "Niger": ["Niger", "Niamey"], "Burkina Faso": ["Burkina Faso", "Ouagadougou"],
    "Libya": ["Libya", "Libyan", "Tripoli"], "Algeria": ["Algeria", "Algerian", "Algiers"],
    "Morocco": ["Morocco", "Moroccan", "Rabat"], "South Africa": ["South Africa", "Pretoria"],
    "Venezuela": ["Venezuela", "Venezuelan", "Caracas"], "Colombia": ["Colombia", "Colombian", "Bogota"],
    "Guyana": ["Guyana", "Georgetown"], "Brazil": ["Brazil", "Brazilian", "Brasilia"],
    "Mexico": ["Mexico", "Mexican"], "Cuba": ["Cuba", "Cuban", "Havana"], "Peru": ["Peru", "Peruvian"],
    "Ecuador": ["Ecuador", "Quito"], "Chile": ["Chile", "Chilean"], "Argentina": ["Argentina", "Argentine",
                                                                                  "Buenos Aires"],
    "Bolivia": ["Bolivia", "Bolivian"], "Nicaragua": ["Nicaragua", "Managua"],
    "Canada": ["Canada", "Canadian", "Ottawa"], "Thailand": ["Thailand", "Thai", "Bangkok"],
    "Cambodia": ["Cambodia", "Cambodian", "Phnom Penh"], "Malaysia": ["Malaysia", "Malaysian", "Kuala Lumpur"],
    "Singapore": ["Singapore"], "Kazakhstan": ["Kazakhstan", "Astana"], "Tajikistan": ["Tajikistan", "Dushanbe"],
    "Kyrgyzstan": ["Kyrgyzstan", "Bishkek"],
    "NATO": ["NATO"], "European Union": ["European Union", "EU", "Brussels"], "United Nations": ["United Nations",
                                                                                                "UN", "U.N."],
    "African Union": ["African Union", "AU"], "ECOWAS": ["ECOWAS"], "IMF": ["IMF"], "ASEAN": ["ASEAN"],
    "OSCE": ["OSCE"], "IAEA": ["IAEA"], "ICRC": ["ICRC", "Red Cross"], "Vatican": ["Vatican", "Holy See"],
}
ROLES = {
    "head of state or government": r"president|prime minister|premier|chancellor|king|emir|crown prince",
    "minister": r"minister|secretary of state|defen[cs]e secretary|foreign secretary",
    "chief of staff or commander": r"chief of (?:the )?(?:general |defen[cs]e )?staff|chairman of the joint chiefs"
                                   r"|commander|general|admiral",
    "envoy or ambassador": r"envoy|ambassador|charg[ée] d'affaires|emissary|special representative",
    "attaché": r"attach[ée]",
    "spokesperson": r"spokes(?:man|woman|person)",
    "officer at a border or local level": r"colonel|major|captain|field commanders?|liaison officers?|brigade",
}


def _party_patterns():
    import re

    return {name: re.compile(r"(?<![\w.])(?:" + "|".join(re.escape(f) for f in forms) + r")(?![\w])")
            for name, forms in PARTIES.items()}


def parties_and_roles(examples) -> list[str]:
    """Approximate breadth figures: pairs of parties named together in a contact passage, and roles."""
    import re

    patterns = _party_patterns()
    pairs: Counter = Counter()
    named = 0
    for e in examples:
        if set(_values(e.labels.get("contact_type"))) - {"none"} == set():
            continue
        found = sorted(name for name, pattern in patterns.items() if pattern.search(e.text))
        named += bool(found)
        pairs.update(combinations(found, 2))
    roles = {role: sum(1 for e in examples if re.search(r"\b(?:" + pattern + r")", e.text, re.I))
             for role, pattern in ROLES.items()}
    lines = [f"Breadth (approximate: a gazetteer of {len(PARTIES)} states and organisations matched by name, "
             f"capital or adjective in the {named} contact passages naming at least one): "
             f"**{len(pairs)} distinct pairs of parties** named together, {sum(1 for n in pairs.values() if n >= 3)} "
             "of them in 3 or more passages. Most frequent:", "",
             ", ".join(f"{a}–{b} {n}" for (a, b), n in pairs.most_common(40)) + ".", "",
             "Officials by level (passages mentioning the role, any label):", "", "| role | passages |", "|---|---|"]
    lines += [f"| {role} | {n} |" for role, n in roles.items()]
    return lines + [""]


def _values(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("data/labels")])
    parser.add_argument("--check", action="store_true", help="compare with data/labels/README.md")
    args = parser.parse_args()
    text = figures(args.paths)
    if args.check:
        card = CARD.read_text()
        current = card.split(BEGIN, 1)[1].split(END, 1)[0].strip()
        if current != text.strip():
            print(f"{CARD}: figures differ from the data; rerun scripts/data_card.py and paste", file=sys.stderr)
            return 1
        print(f"{CARD}: figures match the data")
        return 0
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
