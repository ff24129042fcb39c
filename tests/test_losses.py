"""DistillationLoss: every term against hand computation in float64, and each knowledge type."""

import math

import pytest
import torch

from sffb.losses import KNOWLEDGE_TYPES, DistillationLoss
from sffb.model import SFFBOutput


def random_output(seed: int, requires_grad: bool = False) -> SFFBOutput:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 2), (3, 4, 2, 2), (3, 4, 2, 2), (3, 4, 2, 2)]
    tensors = [
        torch.randn(s, generator=g, dtype=torch.float64, requires_grad=requires_grad)
        for s in shapes
    ]
    return SFFBOutput(*tensors)


def mse(a, b):
    flat_a, flat_b = a.flatten().tolist(), b.flatten().tolist()
    return sum((x - y) ** 2 for x, y in zip(flat_a, flat_b, strict=True)) / len(flat_a)


def softmax(row, t):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


LABELS = torch.tensor([1, 0, 1])


def test_every_term_equals_hand_computation():
    student, teacher = random_output(0), random_output(1)
    lambdas, t = (0.7, 3.0, 1.3), 2.5
    terms = DistillationLoss(*lambdas, temperature=t)(student, teacher, LABELS)
    feature = mse(student.freq_map, teacher.freq_map) + mse(
        student.spatial_map, teacher.spatial_map
    )
    soft = 0.0
    hard = 0.0
    rows = zip(student.logits.tolist(), teacher.logits.tolist(), LABELS.tolist(), strict=True)
    for z, v, y in rows:
        p_teacher, p_student = softmax(v, t), softmax(z, t)
        soft -= sum(p * math.log(q) for p, q in zip(p_teacher, p_student, strict=True)) / 3
        hard -= math.log(softmax(z, 1.0)[y]) / 3
    assert terms.feature.item() == pytest.approx(feature, rel=1e-12)
    assert terms.soft.item() == pytest.approx(soft, rel=1e-12)
    assert terms.hard.item() == pytest.approx(hard, rel=1e-12)
    total = lambdas[0] * feature + lambdas[1] * soft + lambdas[2] * hard
    assert terms.total.item() == pytest.approx(total, rel=1e-12)


def test_paper_defaults():
    loss = DistillationLoss()
    assert (loss.lambda1, loss.lambda2, loss.lambda3, loss.temperature) == (2.0, 100.0, 1.0, 1.0)
    assert loss.knowledge == "maps+logits"


def shifted(output: SFFBOutput, field: str) -> SFFBOutput:
    """``field`` changed by a scale and a shift (a shift alone would leave a softmax unchanged)."""
    return output._replace(**{field: getattr(output, field) * 1.5 + 0.5})


@pytest.mark.parametrize(
    ("knowledge", "used"),
    [
        ("maps+logits", {"spatial_map", "freq_map", "logits"}),
        ("maps", {"spatial_map", "freq_map"}),
        ("sum_of_maps", {"spatial_map", "freq_map"}),
        ("fused_map", {"fused_map"}),
        ("fused_map+logits", {"fused_map", "logits"}),
    ],
)
def test_each_knowledge_uses_exactly_what_it_names(knowledge, used):
    loss = DistillationLoss(knowledge=knowledge)
    student, teacher = random_output(2), random_output(3)
    base = loss(student, teacher, LABELS)
    for field in SFFBOutput._fields:
        moved = loss(student, shifted(teacher, field), LABELS)
        changed = not torch.isclose(moved.total, base.total, rtol=0, atol=1e-12)
        assert changed == (field in used), f"{knowledge}: teacher {field} changed={changed}"
    # The student's hard loss never depends on the teacher.
    assert base.hard == loss(student, shifted(teacher, "logits"), LABELS).hard
    if "logits" not in used:
        assert base.soft.item() == 0.0


def test_sum_of_maps_compares_the_sum_not_each_map():
    student, teacher = random_output(4), random_output(5)
    opposite = teacher._replace(
        spatial_map=teacher.spatial_map + 1.0, freq_map=teacher.freq_map - 1.0
    )
    summed = DistillationLoss(knowledge="sum_of_maps")
    assert summed(student, opposite, LABELS).total == pytest.approx(
        summed(student, teacher, LABELS).total
    )
    expected = mse(student.spatial_map + student.freq_map, teacher.spatial_map + teacher.freq_map)
    assert summed(student, teacher, LABELS).feature.item() == pytest.approx(expected, rel=1e-12)


def test_hard_only_needs_no_teacher():
    student = random_output(6)
    terms = DistillationLoss.hard_only()(student, None, LABELS)
    expected = torch.nn.functional.cross_entropy(student.logits, LABELS)
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert terms.feature.item() == terms.soft.item() == 0.0


def test_gradients_reach_the_student_only():
    student, teacher = random_output(7, requires_grad=True), random_output(8, requires_grad=True)
    DistillationLoss()(student, teacher, LABELS).total.backward()
    assert all(t.grad is None for t in teacher)
    assert student.logits.grad is not None and student.spatial_map.grad is not None
    assert student.fused_map.grad is None  # maps+logits does not use the fused map


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown knowledge 'attention'"):
        DistillationLoss(knowledge="attention")
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=0)
    with pytest.raises(ValueError, match="needs the teacher"):
        DistillationLoss()(random_output(9), None, LABELS)
    assert "maps+logits" in KNOWLEDGE_TYPES and "none" in KNOWLEDGE_TYPES


def test_terms_log_as_floats():
    terms = DistillationLoss()(random_output(10), random_output(11), LABELS)
    floats = terms.as_floats()
    assert set(floats) == {"total", "feature", "soft", "hard"}
    assert floats["total"] == pytest.approx(terms.total.item())


def unit_distance(a, b):
    """Per sample: |a/|a| - b/|b||^2 over the flattened map; then the batch mean (float64)."""
    total = 0.0
    for row_a, row_b in zip(a.flatten(1).tolist(), b.flatten(1).tolist(), strict=True):
        norm_a, norm_b = math.sqrt(sum(x * x for x in row_a)), math.sqrt(sum(x * x for x in row_b))
        total += sum((x / norm_a - y / norm_b) ** 2 for x, y in zip(row_a, row_b, strict=True))
    return total / a.shape[0]


def test_t2_scaling_and_normalised_maps_against_hand_computation():
    student, teacher = random_output(12), random_output(13)
    t = 3.0
    plain = DistillationLoss(temperature=t)(student, teacher, LABELS)
    options = DistillationLoss(temperature=t, soft_scale="t2", feature_norm="l2")
    terms = options(student, teacher, LABELS)
    assert terms.soft.item() == pytest.approx(t * t * plain.soft.item(), rel=1e-12)
    feature = unit_distance(student.freq_map, teacher.freq_map) + unit_distance(
        student.spatial_map, teacher.spatial_map
    )
    assert terms.feature.item() == pytest.approx(feature, rel=1e-12)
    assert terms.hard.item() == plain.hard.item()
    # Normalised maps ignore the maps' scale: a teacher 1000x larger gives the same term.
    louder = teacher._replace(
        freq_map=teacher.freq_map * 1000, spatial_map=teacher.spatial_map * 1000
    )
    assert options(student, louder, LABELS).feature.item() == pytest.approx(feature, rel=1e-9)


def test_unknown_balancing_options_are_refused():
    with pytest.raises(ValueError, match="unknown soft_scale 'hinton'"):
        DistillationLoss(soft_scale="hinton")
    with pytest.raises(ValueError, match="unknown feature_norm 'l1'"):
        DistillationLoss(feature_norm="l1")
    with pytest.raises(ValueError, match="unknown balance 'adaptive'"):
        DistillationLoss(balance="adaptive")


def test_running_balance_divides_each_term_by_its_hand_computed_moving_mean():
    momentum, lambdas = 0.9, (2.0, 100.0, 1.0)
    loss = DistillationLoss(*lambdas, balance="running", balance_momentum=momentum)
    plain = DistillationLoss(*lambdas)
    means: dict[str, float] = {}
    for step in range(4):
        student, teacher = random_output(20 + 2 * step), random_output(21 + 2 * step)
        raw = plain(student, teacher, LABELS).as_floats()
        terms = loss(student, teacher, LABELS)
        for name in ("feature", "soft", "hard"):  # a float64 EMA seeded by the first value
            previous = means.get(name)
            value = raw[name]
            means[name] = value if previous is None else momentum * previous + 0.1 * value
            assert terms.as_floats()[name] == pytest.approx(value, rel=1e-12)  # logged raw
        expected = sum(
            weight * raw[name] / means[name]
            for weight, name in zip(lambdas, ("feature", "soft", "hard"), strict=True)
        )
        assert terms.total.item() == pytest.approx(expected, rel=1e-12)
        assert sum(terms.weighted.values()).item() == pytest.approx(expected, rel=1e-12)
    # The means are the loss's state: a checkpoint restores them exactly, and eval mode freezes.
    restored = DistillationLoss(*lambdas, balance="running", balance_momentum=momentum)
    restored.load_state_dict(loss.state_dict())
    student, teacher = random_output(40), random_output(41)
    restored.eval()
    loss.eval()
    assert (
        restored(student, teacher, LABELS).total.item()
        == loss(student, teacher, LABELS).total.item()
    )
    assert loss.magnitudes.means.tolist() == pytest.approx(
        [means[n] for n in ("feature", "soft", "hard")]
    )


def test_running_balance_leaves_unused_terms_at_zero():
    loss = DistillationLoss(knowledge="fused_map", balance="running")
    terms = loss(random_output(50), random_output(51), LABELS)
    assert terms.soft.item() == 0.0
    assert loss.magnitudes.seen.tolist() == [True, False, True]
    # The first step divides each used term by itself: lambda1 + lambda3.
    assert terms.total.item() == pytest.approx(2.0 + 1.0, rel=1e-12)


@pytest.mark.parametrize(
    ("epoch", "warmup", "factor"), [(0, 0, 1.0), (0, 2, 0.0), (1, 2, 0.5), (2, 2, 1.0), (5, 2, 1.0)]
)
def test_kd_warmup_ramps_only_the_distillation_terms(epoch, warmup, factor):
    student, teacher = random_output(60), random_output(61)
    loss = DistillationLoss(kd_warmup_epochs=warmup)
    loss.start_epoch(epoch)
    terms = loss(student, teacher, LABELS)
    expected = factor * (2.0 * terms.feature.item() + 100.0 * terms.soft.item()) + terms.hard.item()
    assert terms.total.item() == pytest.approx(expected, rel=1e-12)
    assert loss.distillation_weight == factor
