// BerthOCI: placeholder until its first implementation lands.
