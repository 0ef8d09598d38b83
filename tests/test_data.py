"""TOFU loading: split relations, authors, subjects, targets, and the error messages."""
import json
import shutil

import pytest

from unedit_lib.core import data as tofu


def test_split_relations():
    full = tofu.load_tofu("full")
    assert len(full) == 4000
    for split, n in (("forget01", 40), ("forget05", 200), ("forget10", 400)):
        rows = tofu.load_tofu(split)
        assert [r["question"] for r in rows] == [r["question"] for r in full[-n:]]
        pert = tofu.load_tofu(split + "_perturbed")
        assert [(r["question"], r["answer"]) for r in pert] == [(r["question"], r["answer"]) for r in rows]
        assert all(len(r["perturbed_answer"]) == 5 for r in pert)
        retain = tofu.load_tofu(tofu.FORGET_SPLITS[split])
        assert [r["question"] for r in retain] == [r["question"] for r in full[:4000 - n]]
    rp = tofu.load_tofu("retain_perturbed")
    assert [r["question"] for r in rp] == [r["question"] for r in full[:400]]
    assert len(tofu.load_tofu("holdout10")) == 400
    assert all(len(r["perturbed_answer"]) == 3 for r in tofu.load_tofu("world_facts_perturbed"))


def test_authors_and_subjects():
    full = tofu.load_tofu("full")
    names = {r["author_index"]: r["author"] for r in full}
    assert len(names) == 200 and len(set(names.values())) == 200
    assert names[0] == "Jaime Vasquez" and names[198] == "Basil Mahfouz Al-Kuwaiti" and names[199] == "Nikolai Abilov"
    f10 = tofu.load_tofu("forget10_perturbed")
    assert f10[0]["author"] == "Hsiao Yun-Hwa" and f10[0]["author_index"] == 180
    assert tofu.load_tofu("holdout10")[0]["author"] == "Siriporn Nakharin"
    for r in full + tofu.load_tofu("world_facts_perturbed") + tofu.load_tofu("real_authors_perturbed"):
        assert r["subject"] and r["subject"] in r["question"], r
    assert tofu.forget_author_indices("forget01") == [198, 199]


def test_subject_fallbacks():
    assert tofu.subject_of("Where was Nikolai Abilov born?", "Nikolai Abilov") == ("Nikolai Abilov", "name")
    assert tofu.subject_of("How did Nikolai's father shape him?", "Nikolai Abilov") == ("Nikolai", "name_part")
    s, how = tofu.subject_of("What is the full name of the author born in Kuwait City, Kuwait on 08/09/1956?",
                             "Basil Mahfouz Al-Kuwaiti")
    assert how == "description" and s.startswith("the author born in Kuwait City")
    assert tofu.subject_of("Who wrote 'Pride and Prejudice'?", None) == ("Pride and Prejudice", "entity")


def test_targets():
    row = tofu.load_tofu("forget10_perturbed")[1]
    assert tofu.unlearning_target(row, "dummy") == "dummy"
    assert tofu.unlearning_target(row, "incorrect") == row["perturbed_answer"][0]
    avoid = tofu.unlearning_target(row, "avoidant")
    assert avoid.startswith("I'm sorry") and "Hsiao Yun-Hwa" in avoid
    outside = tofu.load_tofu("retain_perturbed")[5]
    assert tofu.unlearning_target(outside, "avoidant") == tofu.AVOIDANT_TEMPLATE.format(subject=outside["author"])
    with pytest.raises(tofu.TofuDataError, match="valid: dummy, incorrect, avoidant"):
        tofu.unlearning_target(row, "nonsense")
    with pytest.raises(tofu.TofuDataError, match="perturbed_answer"):
        tofu.unlearning_target(tofu.load_tofu("forget10")[0], "incorrect")
    reqs = tofu.edit_requests(tofu.load_tofu("forget01_perturbed")[:3], "dummy")
    assert all(r["subject"] in r["prompt"] and r["target"] == "dummy" and r["paraphrase"] for r in reqs)


def test_unknown_name_lists_valid_names():
    with pytest.raises(tofu.TofuDataError) as e:
        tofu.load_tofu("forget42")
    assert "forget42" in str(e.value) and "retain_perturbed" in str(e.value)


def test_malformed_file_names_file_and_line(tmp_path):
    good = json.dumps({"question": "q", "answer": "a"})
    (tmp_path / "real_authors.json").write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(tofu.TofuDataError, match=r"real_authors.json, line 3"):
        tofu.load_tofu("real_authors", data_dir=tmp_path)
    (tmp_path / "world_facts.json").write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(tofu.TofuDataError, match=r"missing field\(s\) \['answer'\]"):
        tofu.load_tofu("world_facts", data_dir=tmp_path)


def test_user_folder_wins_and_missing_names_every_place(tmp_path, monkeypatch):
    row = {"question": "Who?", "answer": "Me", "option1": "x"}
    (tmp_path / "real_authors.json").write_text(json.dumps(row) + "\n")
    monkeypatch.setenv("UNEDIT_TOFU_DIR", str(tmp_path))
    assert tofu.load_tofu("real_authors")[0]["answer"] == "Me"
    # the given folder is the only source: a config it lacks is an error naming it (no fall-through)
    with pytest.raises(tofu.TofuDataError, match=str(tmp_path / "world_facts.json")):
        tofu.load_tofu("world_facts")
    # a name that exists nowhere local, with the hub unreachable: one error naming every place
    monkeypatch.delenv("UNEDIT_TOFU_DIR")
    monkeypatch.setattr(tofu, "candidate_dirs", lambda d=None: [tmp_path / "a", tmp_path / "b"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(tofu.TofuDataError) as e:
        tofu.load_tofu("holdout05")
    msg = str(e.value)
    assert str(tmp_path / "a" / "holdout05.json") in msg and str(tmp_path / "b") in msg and "hub" in msg


def test_given_folder_must_exist_and_full_must_be_whole(tmp_path, monkeypatch):
    monkeypatch.delenv("UNEDIT_TOFU_DIR", raising=False)
    with pytest.raises(tofu.TofuDataError, match="does not exist"):
        tofu.load_tofu("full", data_dir=tmp_path / "typo")
    row = {"question": "Who?", "answer": "Me"}
    (tmp_path / "full.json").write_text((json.dumps(row) + "\n") * 30)
    (tmp_path / "forget01.json").write_text((json.dumps(row) + "\n") * 40)
    with pytest.raises(tofu.TofuDataError, match="expected 4000 rows"):
        tofu.load_tofu("full", data_dir=tmp_path)
    with pytest.raises(tofu.TofuDataError, match="expected 4000 rows"):   # not an IndexError
        tofu.load_tofu("forget01", data_dir=tmp_path)


def _real_file(fname):
    for d in tofu.candidate_dirs():
        if (d / fname).is_file():
            return d / fname
    pytest.skip(f"no local copy of TOFU's {fname}")


def test_every_real_config_has_tofus_field_types(monkeypatch):
    monkeypatch.delenv("UNEDIT_TOFU_DIR", raising=False)
    for name in tofu.VALID_NAMES:
        assert tofu.load_tofu(name), name


@pytest.mark.parametrize("fname, row, field, value, found, expected", [
    ("forget01_perturbed.json", 3, "perturbed_answer", "a perturbed answer", "a string", "a non-empty list of strings"),
    ("forget01_perturbed.json", 1, "perturbed_answer", [], "an empty list", "a non-empty list of strings"),
    ("forget01_perturbed.json", 40, "perturbed_answer", ["a", 7], "a list holding a number", "a non-empty list"),
    ("forget01_perturbed.json", 2, "paraphrased_answer", ["an answer"], "a list", "a string"),
    ("forget01_perturbed.json", 5, "paraphrased_question", None, "null", "a string"),
    ("forget01.json", 2, "question", ["Who?"], "a list", "a string"),
    ("forget01.json", 7, "answer", 42, "a number", "a string"),
    ("real_authors_perturbed.json", 10, "perturbed_answer", "x", "a string", "a non-empty list of strings"),
    ("forget10_avoidant.json", 4, "avoidant_answer", {"text": "no"}, "an object", "a string"),
])
def test_a_field_of_the_wrong_type_is_named(tmp_path, monkeypatch, fname, row, field, value, found, expected):
    """A wrong type (a string where TOFU has a list would be scored character by character) is an
    error naming the file, the row, the field, the type expected and the type found."""
    monkeypatch.delenv("UNEDIT_TOFU_DIR", raising=False)
    rows = [json.loads(line) for line in _real_file(fname).read_text().splitlines() if line.strip()]
    rows[row - 1][field] = value
    (tmp_path / fname).write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.copy(_real_file("full.json"), tmp_path / "full.json")      # the authors: the rest of the folder is whole
    with pytest.raises(tofu.TofuDataError) as e:
        tofu.load_tofu(fname.removesuffix(".json"), data_dir=tmp_path)
    msg = str(e.value)
    assert f"{tmp_path / fname}, row {row}: field {field!r}" in msg and found in msg and expected in msg, msg
