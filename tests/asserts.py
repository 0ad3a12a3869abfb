"""Assertions several CLI test files share."""


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2, result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
