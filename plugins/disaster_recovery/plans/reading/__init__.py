"""Reading plan files: bounded YAML in, a validated PlanSet (or problems naming file, step, field) out."""
