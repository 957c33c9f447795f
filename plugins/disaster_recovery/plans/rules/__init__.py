"""The rules a plan is judged by beyond its fields: criteria, the step graph, results, templates, secrets, warnings."""
