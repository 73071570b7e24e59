#!/usr/bin/env python3
"""Generate the redactor's embedded name dictionaries.

Source: the PyPI package `names` 0.3.0 (MIT licence, Trey Hunner), which ships the 1990 US
Census frequency files dist.male.first, dist.female.first and dist.all.last (public domain,
US Census Bureau). Output: src/redact/data/first_names.txt and surnames.txt, one capitalised
name per line, most frequent first. Words that are far more often something else in agent
traces (tech names, common English words) are left out here and again at run time.

Usage: python3 scripts/gen_names.py [path/to/names-0.3.0.tar.gz]
       (get the archive with: pip download names==0.3.0 --no-deps)
"""
import io
import os
import sys
import tarfile

TOP_FIRST_FEMALE = 2500
TOP_FIRST_MALE = 1000
TOP_LAST = 6000

# Too ambiguous to count as a name on dictionary evidence alone.
STOP = {
    "ada", "julia", "kafka", "jenkins", "ruby", "rust", "dart", "swift", "go", "java", "scala",
    "elixir", "crystal", "pascal", "perl", "lua", "nim", "zig", "docker", "helm", "grafana",
    "kotlin", "lorenz", "celery", "django", "flask", "rails", "spark", "hadoop", "kibana",
    "will", "may", "june", "april", "august", "march", "january", "july", "grant", "bill",
    "mark", "rich", "long", "young", "white", "black", "brown", "green", "gray", "grey", "king",
    "page", "case", "hope", "joy", "faith", "grace", "major", "street", "summer", "winter",
    "autumn", "dawn", "sky", "rose", "lane", "park", "hill", "wood", "field", "ford", "price",
    "cash", "golden", "love", "north", "south", "east", "west", "best", "good", "bell", "said",
    "see", "so", "an", "in", "on", "or", "by", "to", "my", "as", "is", "it", "do", "be", "we",
    "he", "me", "no", "of", "the", "and", "for", "not", "but", "all", "new", "one", "can",
    "man", "son", "day", "job", "key", "ip", "id", "api", "url", "http", "post", "get", "put",
    "error", "info", "debug", "warn", "trace", "fatal", "order", "ship", "card", "note",
    "true", "false", "null", "none", "ok", "done", "status", "version", "build", "release",
    "user", "admin", "root", "guest", "test", "main", "master", "chase", "gate", "bank",
    "early", "little", "small", "short", "hand", "head", "lead", "cook", "baker", "miller",
    "mason", "carter", "walker", "hunter", "fisher", "porter", "turner", "cole", "dean",
    "sage", "storm", "chance", "deal", "dock", "echo", "else", "ever", "few", "fine", "fox",
    "free", "gene", "glass", "hay", "held", "home", "house", "man", "mast", "met", "mint",
    "moon", "more", "much", "nash", "noble", "nose", "pace", "paris", "penny", "post",
    "rain", "ray", "read", "reed", "rice", "roll", "salt", "sharp", "shell", "sign", "silver",
    "snow", "stone", "strong", "tree", "vale", "wall", "ward", "wave", "way", "wise", "worth",
}


def read(tar, member, top):
    out = []
    with tar.extractfile(member) as fh:
        for line in io.TextIOWrapper(fh, encoding="ascii"):
            parts = line.split()
            if not parts:
                continue
            name = parts[0].lower()
            if len(name) < 2 or name in STOP:
                continue
            out.append(name.capitalize())
            if len(out) >= top:
                break
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else "names-0.3.0.tar.gz"
    dst = os.path.join(here, "..", "src", "redact", "data")
    with tarfile.open(src) as tar:
        base = "names-0.3.0/names/"
        female = read(tar, base + "dist.female.first", TOP_FIRST_FEMALE)
        male = read(tar, base + "dist.male.first", TOP_FIRST_MALE)
        last = read(tar, base + "dist.all.last", TOP_LAST)
    first, seen = [], set()
    for n in male + female:
        if n not in seen:
            seen.add(n)
            first.append(n)
    for fname, names in (("first_names.txt", first), ("surnames.txt", last)):
        with open(os.path.join(dst, fname), "w", encoding="ascii") as fh:
            fh.write("\n".join(names) + "\n")
        print("%s: %d names" % (fname, len(names)))


if __name__ == "__main__":
    main()
