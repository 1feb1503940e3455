"""The labels reader: families, canonical values, missing and malformed records."""
import pytest

from pinlanding.evaluation.labels import Labels, labels_file, parse_record, read_labels


def test_read_labels_families_and_skips(labels_path):
    labels = read_labels(labels_path.parent)  # the folder works as well as the file
    assert labels.n_records == 9
    assert labels.skipped == {"malformed JSON": 1, "missing id": 1}
    assert labels.values["category"]["1"] == {"tshirt", "topwear", "apparel"}
    assert labels.values["colour"]["3"] == {"navy blue"}
    assert labels.values["pattern"]["2"] == {"striped"}
    assert "4" not in labels.values["pattern"]  # no Pattern: no label, not "wrong"
    assert labels.values["brand"]["1"] == {"nike"}
    assert labels.spellings["colour"]["navy blue"]["Navy Blue"] == 1


def test_missing_values_are_not_labels():
    labels = Labels()
    parse_record(labels, {"id": 5, "baseColour": "NA", "usage": "", "season": None, "gender": "Boys",
                          "ageGroup": "Kids-Boys", "articleAttributes": {"Fabric": "Other", "Fit": "Slim Fit"}})
    assert "colour" not in labels.values and "occasion" not in labels.values and "material" not in labels.values
    assert labels.values["gender"]["5"] == {"boy", "kid"}
    assert labels.values["fit"]["5"] == {"slim"}


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="styles.jsonl.gz"):
        labels_file(tmp_path)


def test_one_graph_row_is_judged_by_the_collection_mapping():
    labels = Labels()
    parse_record(labels, {"id": 7, "articleType": "Tshirts", "baseColour": "Navy Blue",
                          "articleAttributes": {"Sleeve Length": "Short Sleeves"}})
    assert labels.judge_row("7", "category", "t-shirt") is True
    assert labels.judge_row("7", "color", "blue") is True  # "navy blue" is a kind of blue
    assert labels.judge_row("7", "color", "red") is False
    assert labels.judge_row("7", "sleeve", "short") is True and labels.judge_row("7", "sleeve", "long") is False
    assert labels.judge_row("7", "material", "cotton") is None  # no fabric label: cannot judge
    assert labels.judge_row("8", "category", "t-shirt") is None and labels.judge_row("7", "style", "x") is None


def test_labels_naming_two_fibres_are_a_blend():
    labels = Labels()
    parse_record(labels, {"id": 1, "articleAttributes": {"Fabric": "Cotton", "Fabric 2": "Polyester", "Fabric 3": "NA"}})
    parse_record(labels, {"id": 2, "articleAttributes": {"Fabric": "Cotton", "Fabric 2": "NA"}})
    parse_record(labels, {"id": 3, "articleAttributes": {"Fabric": "Cotton Blend"}})
    assert labels.judge_row("1", "material", "blended") is True and labels.judge_row("1", "material", "cotton") is True
    assert labels.judge_row("2", "material", "blended") is False
    assert labels.judge_row("3", "material", "blended") is True and labels.judge_row("3", "material", "cotton") is True


def test_a_kids_age_group_names_the_audience_the_gender_field_misses():
    labels = Labels()
    parse_record(labels, {"id": 8, "gender": "Women", "ageGroup": "Kids-Girls"})
    parse_record(labels, {"id": 9, "gender": "Unisex", "ageGroup": "Kids-Unisex"})
    parse_record(labels, {"id": 10, "gender": "Women", "ageGroup": "Adults-Women"})
    assert labels.values["gender"]["8"] == {"women", "kid", "girl"}
    assert labels.judge_row("8", "gender", "girls") is True
    assert labels.values["gender"]["9"] == {"unisex", "kid"}
    assert labels.values["gender"]["10"] == {"women"}
