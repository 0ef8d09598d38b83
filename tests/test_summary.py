"""The README's five-line answer: every number from the records, every record shape read."""
from unedit_lib import gates, report, store, summary


def test_rewrite_accuracy_reads_each_editors_record():
    assert summary.rewrite_accuracy({"edit_metrics": {"rewrite_acc_mean": 0.4, "pre_rewrite_acc_mean": 0.1}}) == 0.4
    assert summary.pre_rewrite_accuracy({"edit_metrics": {"rewrite_acc_mean": 0.4, "pre_rewrite_acc_mean": 0.1}}) == 0.1
    ike = {"stats": {"edit_metrics": {"pre": {"rewrite_acc": 0.0}, "post": {"rewrite_acc": 0.9}}}}
    assert summary.rewrite_accuracy(ike) == 0.9 and summary.pre_rewrite_accuracy(ike) == 0.0
    wise = {"stats": {"edit_metrics": {"edit prompt": {"rewrite_acc_mean": 0.8},
                                       "evaluator prompt": {"rewrite_acc_mean": 0.5}}}}
    assert summary.rewrite_accuracy(wise) == 0.5          # the prompt the evaluator asks
    assert summary.rewrite_accuracy({"stats": {}}) is None


def test_answer_lines_follow_the_committed_records():
    records = store.load_results("default")
    table = report.main_table(records)
    found = report.findings(table, gates.gate_rows(records))
    lines = summary.answer_lines(records, table, found)
    assert len(lines) == 5
    rome = next(line for line in lines if line.startswith("* **ROME**"))
    acc = summary.rewrite_accuracy(records["rome-dummy"])
    assert f"dummy {100 * acc:.0f}%" in rome
    n_rep = sum(f["verdict"] == "reproduced" for f in found)
    assert lines[-1].startswith(f"* **Against the paper**: of its {len(found)} findings tested here, {n_rep} reproduced")
