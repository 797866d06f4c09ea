"""The built-in profiles' era (the grader's versions of the CodaLab years), the grader's
network as a profile setting, and the profile's default shift suite."""

from __future__ import annotations

import pytest

from subkit import profile as profile_mod
from subkit.errors import ProfileError

CODALAB = ("an2dl-2022-ts-classification", "an2dl-2023-forecasting", "an2dl-2023-plants")


@pytest.mark.parametrize("name", CODALAB)
def test_the_codalab_years_run_tensorflow_2_15_with_keras_2_and_the_students_extras(name):
    g = profile_mod.load(name, workspace=False).grader
    assert (g["tensorflow"], g["keras"]) == ("2.15.0", "2.15.0")
    assert g["extras"] == {"scikit-learn": "1.2.2", "scipy": "1.11.4"}
    # the evidence is cited next to the pins
    text = (profile_mod.resources.files("subkit") / "profiles" / f"{name}.toml").read_text()
    assert "Davide-Console/AN2DL_2022_homework2 requirements.txt" in text
    assert "keras_metadata.pb" in text and "FACTS.md section 8" in text


def test_each_profile_says_whether_its_grader_has_the_network():
    got = {n: profile_mod.load(n, workspace=False).network for n in profile_mod.builtin_names()}
    # Codabench's worker leaves it on; CodaLab's queue unknown (off); Kaggle runs no code
    assert got == {"an2dl-2022-ts-classification": "off", "an2dl-2023-forecasting": "off",
                   "an2dl-2023-plants": "off", "an2dl-2024-blood-cells": "on",
                   "an2dl-2024-mars-terrain": "off", "an2dl-2025-pirate-pain": "off"}
    cb = profile_mod.load("an2dl-2024-blood-cells", workspace=False)
    assert cb.isolate_network() is False  # on: the run leaves it, as the grader would
    assert cb.isolate_network(True) is True  # the command line wins
    plants = profile_mod.load("an2dl-2023-plants", workspace=False)
    assert plants.isolate_network() is True and plants.isolate_network(False) is False


def test_the_blood_cells_profile_names_its_hypothesis_as_the_default_suite():
    assert profile_mod.load("an2dl-2024-blood-cells", workspace=False).default_shift_suite \
        == "hidden-2024"
    assert profile_mod.load("an2dl-2023-plants", workspace=False).default_shift_suite \
        == "default"


def test_a_workspace_overrides_the_network_and_the_suite(tmp_path):
    (tmp_path / "subkit.toml").write_text(
        'profile = "an2dl-2024-blood-cells"\n[sandbox]\nnetwork = "off"\n'
        '[shift]\ndefault = "microscopy"\n')
    prof = profile_mod.load(workspace=tmp_path)
    assert prof.network == "off" and prof.isolate_network() is True
    assert prof.default_shift_suite == "microscopy"


@pytest.mark.parametrize("table, message", [
    ('[sandbox]\nnetwork = "maybe"\n', "[sandbox] network 'maybe' is not off or on"),
    ('[sandbox]\nnetwork = true\n', "[sandbox] network should be str, got True"),
    ('[shift]\ndefault = " "\n', "[shift] default is empty"),
    ('[sandbox]\nproxy = "x"\n', "unknown key 'proxy' in [sandbox]"),
])
def test_bad_network_or_suite_settings_are_refused(tmp_path, table, message):
    (tmp_path / "subkit.toml").write_text('profile = "an2dl-2024-blood-cells"\n' + table)
    with pytest.raises(ProfileError) as err:
        profile_mod.load(workspace=tmp_path)
    assert message in err.value.message and err.value.hint
