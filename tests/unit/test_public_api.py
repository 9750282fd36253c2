import plantstage


def test_exported_names():
    assert sorted(plantstage.__all__) == plantstage.__all__
    assert set(plantstage.__all__) == {"PlantstageError", "__version__", "check", "demo",
                                       "rehearse", "schema"}


def test_the_plugin_api_is_one_module():
    from plantstage import api

    assert set(api.__all__) >= {"FlowContext", "FlowError", "Tenant", "flow", "run_flow_once",
                                "RunResources"}
    for name in api.__all__:
        assert getattr(api, name).__doc__, f"plantstage.api.{name} is undocumented"
