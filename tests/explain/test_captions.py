"""Captions say in plain words what a map shows, read from the method's declaration: for the class,
against it (counterfactual), one class rather than another (contrast), the probability or the
score, red and blue of a signed map; class-agnostic maps say they explain no answer."""
from explain import METHODS, report
from explain.captions import describe, hot, legend


def test_a_plain_map_says_red_raised_the_score_for_the_class():
    assert describe(METHODS["gradcam"], "sports car") == \
        "red: the parts of the photo that raised the model's score for sports car"


def test_the_probability_is_named_when_it_is_the_explained_number():
    text = describe(METHODS["gradcam"], "sports car", probability=True)
    assert "probability for sports car" in text and "score" not in text


def test_a_counterfactual_map_says_it_speaks_against_the_class():
    text = describe(METHODS["gradcam"], "sports car", counterfactual=True)
    assert "against sports car" in text and "lowered" in text and "raised" not in text
    # A method whose declaration does not honour counterfactual keeps its plain caption.
    assert not METHODS["gradients"].counterfactual
    assert "against" not in describe(METHODS["gradients"], "sports car", mode="abs", counterfactual=True)


def test_a_contrast_says_rather_than_and_signed_says_what_blue_is():
    assert describe(METHODS["gradcam"], "sports car", contrast="convertible").endswith(
        "prefer sports car rather than convertible")
    signed = describe(METHODS["gradcam"], "sports car", contrast="convertible", signed=True)
    assert "red: the parts of the photo that favour sports car rather than convertible" in signed
    assert "blue: the parts that favour convertible" in signed


def test_a_signed_map_says_red_for_and_blue_against():
    text = describe(METHODS["integrated-gradients"], "bus", mode="magnitude", signed=True)
    assert text.startswith("red: the parts of the photo that raised the model's score for bus")
    assert "blue: the parts that lowered it" in text
    # Drawn unsigned (by its size), the same map says it counts both ways.
    assert "up or down" in describe(METHODS["integrated-gradients"], "bus", mode="magnitude")


def test_class_agnostic_maps_say_they_explain_no_answer():
    assert not METHODS["eigencam"].needs_target
    text = describe(METHODS["eigencam"], "bus", contrast="car", counterfactual=True)
    assert "whatever the class" in text and "bus" not in text and "car" not in text


def test_the_colour_word_follows_the_colormap():
    assert hot("jet") == "red" and hot("viridis") == "yellow"
    assert describe(METHODS["gradcam"], "bus", colormap="viridis").startswith("yellow: ")
    assert describe(METHODS["gradcam"], "bus", colormap="viridis", signed=True).startswith("red: ")  # diverging
    assert legend(False) == ("less", "more") and legend(True) == ("against", "for")


def test_the_report_uses_the_same_words_as_html():
    html = report.caption(METHODS["gradcam"], "sports car", counterfactual=True)
    assert html.startswith("Red: the parts of the photo that speak <b>against</b> <i>sports car</i>")
    assert "&lt;" in report.caption(METHODS["gradcam"], "<script>")   # class names are escaped
