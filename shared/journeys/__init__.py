"""Customer-success journeys: the YAML definition (`loader`), the pure state machine (`engine`), the step history
(`history`) and the pipeline's part (`service`: stage write, history, entry actions, CRM write-back)."""
