import json

from keras_attn_zoo.cli import main


def test_list_and_info(capsys):
    assert main(["list", "fa_se_resnet*"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("fa_se_resnet110") and "FA-SE-ResNet-110" in out[0]
    assert main(["info", "fa_resnet20", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 297_222 and info["paper_results"][0]["params_m"] == 0.297


def test_errors_are_messages_not_tracebacks(capsys):
    assert main(["info", "fa_resnet65"]) == 2
    assert "Did you mean: fa_resnet56" in capsys.readouterr().err


def test_gates(capsys):
    assert main(["gates", "fa_resnet20", "--batch", "2"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert "random initialisation" in lines[0]
    assert len(lines) == 9 and lines[1].startswith("stage1_block2_fa")
