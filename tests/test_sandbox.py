"""`scan --template FILE`: the user's own jinja2 template, in the sandbox, with our filters."""
from click.testing import CliRunner

from postmortem.cli import cli

LOG = '''Traceback (most recent call last):
  File "/home/alice/proj/tiny_lora.py", line 57, in forward
    logits = self.score(hidden_states)
RuntimeError: expected mat1 and mat2 to have the same dtype, but got: c10::BFloat16 != float
'''


def render(tmp_path, template: str, *args):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    path = tmp_path / "mine.j2"
    path.write_text(template)
    return CliRunner().invoke(cli, ["scan", str(log), "--template", str(path), *args], env={"POSTMORTEM_LANG": "en"})


def test_a_template_sees_the_incidents_and_the_built_in_filters(tmp_path):
    result = render(tmp_path, "{% for i in incidents %}{{ i.signature }} at {{ i.location.file }}:"
                              "{{ i.location.line }} {{ i.evidence | code_span }}\n{% endfor %}")
    assert result.exit_code == 0, result.output
    assert result.output == ("dtype-mismatch at ~/proj/tiny_lora.py:57 `RuntimeError: expected mat1 and mat2 "
                             "to have the same dtype, but got: c10::BFloat16 != float`\n")


def test_a_template_can_include_the_built_in_entry(tmp_path):
    template = ("{% for entry in entries %}{% with i = entry.incident, n = entry.number, "
                "cause_number = entry.cause_number %}{% include 'incident.md.j2' %}{% endwith %}{% endfor %}")
    result = render(tmp_path, template, "--lang", "zh")
    assert result.exit_code == 0, result.output
    assert "**错误现象**" in result.output and "<!-- postmortem: dtype-mismatch" in result.output


def test_python_internals_are_out_of_reach(tmp_path):
    result = render(tmp_path, "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    assert result.exit_code == 2
    assert "mine.j2" in result.output and "Traceback" not in result.output


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    result = render(tmp_path, "ok\n{% for i in incidents %}\n")
    assert result.exit_code == 2
    assert "mine.j2:" in result.output and result.output.strip().count("\n") == 0


def test_an_undefined_name_is_an_error_not_an_empty_string(tmp_path):
    result = render(tmp_path, "{{ incidnets }}")
    assert result.exit_code == 2 and "incidnets" in result.output


def test_the_template_gets_redacted_data_unless_told_otherwise(tmp_path):
    template = "{{ incidents[0].location.file }}"
    assert render(tmp_path, template).output == "~/proj/tiny_lora.py"
    assert render(tmp_path, template, "--no-redact").output == "/home/alice/proj/tiny_lora.py"


def test_the_help_documents_the_option():
    result = CliRunner().invoke(cli, ["scan", "--help"])
    assert "--template" in result.output and "sandbox" in result.output
    assert "--input-format" in result.output and "kaggle" in result.output
