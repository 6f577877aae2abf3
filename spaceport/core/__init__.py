"""The spine: the stage template and graph, the job plan, the SageMaker contract, configs, errors and
the summary models. Light (stdlib and pydantic): the Lambdas and the CDK app import it."""
