import plantstage


def test_exported_names():
    assert sorted(plantstage.__all__) == plantstage.__all__
    assert set(plantstage.__all__) == {"PlantstageError", "__version__", "check", "demo",
                                       "rehearse", "schema"}
