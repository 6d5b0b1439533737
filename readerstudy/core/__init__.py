"""What every app shares: action errors, the audit trail, the job base, admin mixins, the URL id converter.

The bottom floor: it imports no app of ours. Where the audit trail and the admin scope need the study, they name
it by its label ("studies.Study"), which the app registry resolves, so no import climbs a floor.
"""
