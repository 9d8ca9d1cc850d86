"""The sync side: DynamoDB Stream -> validated model-set snapshot -> SSM Parameter Store."""
