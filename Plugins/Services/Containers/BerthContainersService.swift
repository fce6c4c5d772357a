// BerthContainersService: placeholder until its first implementation lands.
