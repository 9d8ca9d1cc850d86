"""A local stand-in for the SageMaker runtime API (InvokeEndpoint, InvokeEndpointWithResponseStream).

It speaks the real wire protocol (AWS event-stream framing with CRCs) so boto3 pointed at it with
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME parses its responses with botocore's own parser.
"""
