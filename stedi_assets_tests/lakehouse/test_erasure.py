

def test_erase_job_takes_the_emails_from_its_config_and_logs_them_masked(small_lakehouse):
    from stedi_assets.orchestration.erasure_job import erase_job

    email = small_lakehouse.read_table(["customer_curated"]).sort("email").tail(1).collect()["email"].item()
    job = Definitions(jobs=[erase_job], resources=resources_for(small_lakehouse)).resolve_job_def("erase_job")
    result = job.execute_in_process(run_config={"ops": {"erase_people": {"config": {"emails": [f" {email.upper()}"]}}}})
    assert result.success
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["people"] == 1 and metadata["not_found"] == "none" and metadata["rows_removed"] > 0
    assert "customer_trusted: 1 row(s) removed" in metadata["report"]
    assert read_register(small_lakehouse).holds("email", email)
    assert traces(small_lakehouse, "customer_trusted").rows == 0
    # Nothing the run logged names them.
    assert all(email.lower() not in str(event).lower() for event in result.all_events)

    refused = job.execute_in_process(
        run_config={"ops": {"erase_people": {"config": {"emails": ["not-an-email"]}}}}, raise_on_error=False
    )
    assert not refused.success
