"""sagemaker-fastchat: the operator CLI, the local stack and the SageMaker runtime stand-in."""
