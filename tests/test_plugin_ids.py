"""Plugin ids are checked before any file is touched."""

import pytest
from django.core.management import CommandError, call_command

from plugins_app import registry

BAD_IDS = ["../x", "A B", "", "x" * 41, "1abc", "combined-v3", "a/b", "Combined_v3", "a\n"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_bad_plugin_id_is_refused_with_a_clear_message(bad):
    with pytest.raises(registry.InvalidPluginId, match="Invalid plugin id"):
        registry.check_plugin_id(bad)


@pytest.mark.parametrize("good", ["a", "combined_v3", "price_action_v6", "x" * 40])
def test_good_plugin_ids_pass(good):
    assert registry.check_plugin_id(good) == good


def test_paths_and_aliases_are_never_built_from_a_bad_id(tmp_path):
    with pytest.raises(registry.InvalidPluginId):
        registry.database_path(tmp_path, "../../etc/passwd")
    with pytest.raises(registry.InvalidPluginId):
        registry.alias_for("A B")


@pytest.mark.parametrize("bad", ["../x", "A B", "x" * 41])
def test_startplugin_refuses_a_bad_id_before_touching_any_file(bad, settings, tmp_path):
    # Folders of its own, with a file in each: the test worker's shared ones changed once while
    # this ran (CI, 2026-11-26), by something other than the command.
    settings.CONFIG_DIR, settings.DATA_DIR = tmp_path / "config", tmp_path / "data"
    for folder in (settings.CONFIG_DIR, settings.DATA_DIR / "plugins"):
        folder.mkdir(parents=True)
        (folder / "kept.txt").write_text("here before")
    before = sorted(settings.CONFIG_DIR.rglob("*")), sorted(settings.DATA_DIR.rglob("*"))
    with pytest.raises(CommandError, match="Invalid plugin id"):
        call_command("startplugin", bad)
    assert (sorted(settings.CONFIG_DIR.rglob("*")), sorted(settings.DATA_DIR.rglob("*"))) == before


@pytest.mark.parametrize("bad", ["../x", "nosuchplugin"])
def test_seed_demo_refuses_an_unknown_or_bad_plugin(bad):
    with pytest.raises(CommandError, match="plugin id|Unknown plugin"):
        call_command("seed_demo", "--trades", "5", "--plugin", bad)


def test_declared_plugins_ignore_files_that_are_not_plugin_documents(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in ("alpha.json", "Bad Name.json", ".alpha.json.tmp", "beta.json~", "gamma.json"):
        (folder / name).write_text("{}")
    assert registry.declared_plugins(tmp_path) == ["alpha", "gamma"]
    assert registry.declared_plugins(tmp_path / "missing") == list(registry.BUILTIN_PLUGINS)
