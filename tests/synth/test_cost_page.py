"""docs/cost.md's figures are what synth computes (`python -m infra.cost_page`)."""

from __future__ import annotations

from infra import cost_page


def test_the_cost_page_is_what_synth_computes() -> None:
    page = cost_page.PAGE.read_text()
    assert cost_page.replace_block(page, cost_page.render()) == page, (
        "docs/cost.md is stale: run python -m infra.cost_page"
    )


def test_check_names_the_command(tmp_path, monkeypatch, capsys) -> None:
    stale = tmp_path / "cost.md"
    stale.write_text(f"# x\n{cost_page.BEGIN}\nold\n{cost_page.END}\n")
    monkeypatch.setattr(cost_page, "PAGE", stale)
    assert cost_page.main(["--check"]) == 1
    assert "python -m infra.cost_page" in capsys.readouterr().err
    assert "old" in stale.read_text()  # --check changes nothing
    assert cost_page.main([]) == 0
    assert cost_page.main(["--check"]) == 0
