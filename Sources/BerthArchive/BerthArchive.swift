// BerthArchive: placeholder until its first implementation lands.
