"""The leaderboard document shared by the CLI and the web UI."""

from __future__ import annotations

from arena.board import battle_matrices, board


def test_board_rows_tallies_and_version_split() -> None:
    """Rows carry the contract's fields; by version a row is name + spec hash; tallies list both tabs."""
    battle = {("a@h1", "b@h2"): {"leftvote": 30, "rightvote": 10, "bothbad_vote": 4}}
    doc = board(
        battle,
        {("a@h1", "b@h2"): {"tievote": 2}},
        {("a@h1",): {"upvote": 3, "flag": 1}},
        by="version",
        min_votes=50,
    )
    assert doc["battle_votes"] == 44
    top = doc["models"][0]
    assert {"model", "rating", "ci_lower", "ci_upper", "votes", "rank", "provisional"} <= set(top)
    assert (top["model"], top["version"], top["votes"], top["provisional"]) == ("a", "h1", 44, True)
    assert doc["side_by_side"] == [
        {"model_a": "a@h1", "model_b": "b@h2", "leftvote": 0, "rightvote": 0, "tievote": 2, "bothbad_vote": 0}
    ]
    assert doc["direct"] == [{"model": "a@h1", "upvote": 3, "downvote": 0, "flag": 1}]


def test_matrices_follow_the_given_order() -> None:
    """Win rates (ties half) and battle counts, in the leaderboard's order; None where two never met."""
    battle = {("a", "b"): {"leftvote": 3, "rightvote": 1}, ("c", "b"): {"tievote": 2}}
    m = battle_matrices(battle, ["b", "a", "c"])
    assert m["models"] == ["b", "a", "c"]
    assert m["win_rate"][1][0] == 0.75
    assert m["win_rate"][1][2] is None
    assert m["battles"][0] == [0, 4, 2]
