"""CDK stacks and constructs of the cloud half of Spaceport (one construct per concern)."""
