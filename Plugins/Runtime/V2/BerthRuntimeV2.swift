// BerthRuntimeV2: placeholder until its first implementation lands.
