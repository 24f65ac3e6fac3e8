"""The lint rules, one module each (``pfaNNN_<what>.py``: the rule class, its message, why it
matters, and the VALID/INVALID examples that tests/test_lint_rules.py runs and
docs/lint-rules.md shows). `ALL_RULES` lists them in code order; `RULES` maps each code to
(severity, title)."""

from __future__ import annotations

from pyfa.lint.rules.base import Example, Invalid, Rule, Valid
from pyfa.lint.rules.pfa000_syntax import Unparsable
from pyfa.lint.rules.pfa001_bare_rule import BareRuleDefinition
from pyfa.lint.rules.pfa002_concrete_array import ConcreteArrayInRule
from pyfa.lint.rules.pfa003_tangent_count import TangentCount
from pyfa.lint.rules.pfa004_functor import FunctorMacro
from pyfa.lint.rules.pfa005_layer_field import LayerTrainableField
from pyfa.lint.rules.pfa006_implicit_params import ImplicitParams
from pyfa.lint.rules.pfa007_undefined_export import UndefinedExport
from pyfa.lint.rules.pfa008_layer_without_struct import LayerWithoutStruct
from pyfa.lint.rules.pfa009_trainable_feedback import TrainableFeedback
from pyfa.lint.rules.pfa010_ad_rule_import import RuleNotImportedIntoAD
from pyfa.lint.rules.pfa011_tuple_trainable import TupleTrainable

ALL_RULES: tuple[type[Rule], ...] = (
    Unparsable,
    BareRuleDefinition,
    ConcreteArrayInRule,
    TangentCount,
    FunctorMacro,
    LayerTrainableField,
    ImplicitParams,
    UndefinedExport,
    LayerWithoutStruct,
    TrainableFeedback,
    RuleNotImportedIntoAD,
    TupleTrainable,
)

RULES: dict[str, tuple[str, str]] = {r.CODE: (r.SEVERITY, r.TITLE) for r in ALL_RULES}

__all__ = ["ALL_RULES", "RULES", "Example", "Invalid", "Rule", "Valid"]
