"""A scenario's candidate query over several programmes in one statement.

When organisations run a rule with different parameters, the rule's parameters reach SQL as
data: one JSON object per distinct parameter set (a *variant*), and the organisation → variant
map as two arrays. The scenario's own named candidate query is reused unchanged: it becomes a
LATERAL subquery run once per variant over that variant's mentors of the batch, its rule
parameters read from the variant's row instead of from ``$n``. So one statement per batch and
rule, whatever the number of organisations, and the scenario packages know nothing of it
(tests/db/test_equivalence.py runs it with random overrides against the single-mentor oracles).
"""

from __future__ import annotations

import re
from functools import cache

from scenario_engine.db.queries import query, query_params

_PARAM = re.compile(r"\$(\d+)(?:::(\w+(?:\[\])?))?")
VARIANT_COLUMN = "engine_variant"


@cache
def programme_statement(candidate_query: str, rule_params: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The statement, and the names of the candidate query's parameters it still takes as
    ``$5`` onwards (after ``$1`` mentors, ``$2`` organisations, ``$3`` their variant numbers
    and ``$4`` the variants' parameters as ``jsonb[]``; ``$6`` … follow)."""
    declared = query_params(candidate_query) or ()
    text = query(candidate_query).strip().rstrip(";")
    types: dict[int, str] = {}
    for m in _PARAM.finditer(text):
        if m.group(2):
            types.setdefault(int(m.group(1)), m.group(2))
    kept = [p for p in declared if p not in rule_params and p != "mentors"]
    numbers = {name: 5 + i for i, name in enumerate(kept)}

    def substitute(m: re.Match[str]) -> str:
        name = declared[int(m.group(1)) - 1]
        cast = f"::{m.group(2)}" if m.group(2) else ""
        if name == "mentors":
            return "engine_variants.mentors"
        if name in rule_params:
            return f"engine_variants.{name}"
        return f"${numbers[name]}{cast}"

    inner = _PARAM.sub(substitute, text)
    columns = []
    for name in rule_params:
        kind = types[declared.index(name) + 1]
        if kind.endswith("[]"):
            columns.append(f"ARRAY(SELECT jsonb_array_elements_text(v.p -> '{name}'))::{kind} AS {name}")
        else:
            columns.append(f"(v.p ->> '{name}')::{kind} AS {name}")
    statement = f"""WITH engine_variant_mentors AS (
    SELECT p.id, coalesce(o.variant, 1) AS variant
    FROM public.peer_mentor p
    LEFT JOIN unnest($2::uuid[], $3::int[]) AS o(org, variant) ON o.org = p.organization_id
    WHERE p.id = ANY($1::uuid[])
), engine_variants AS (
    SELECT v.ord::int AS variant, {", ".join(columns)},
           ARRAY(SELECT vm.id FROM engine_variant_mentors vm
                 WHERE vm.variant = v.ord ORDER BY vm.id) AS mentors
    FROM unnest($4::jsonb[]) WITH ORDINALITY AS v(p, ord)
    WHERE v.p IS NOT NULL
)
SELECT engine_variants.variant AS {VARIANT_COLUMN}, q.*
FROM engine_variants
CROSS JOIN LATERAL (
{inner}
) q"""
    return statement, tuple(kept)
