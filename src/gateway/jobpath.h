/*
 * jobpath.h - parsing the /jobs/{id}[/{action}] paths (pure, for unit tests).
 */
#ifndef ASYA_GW_JOBPATH_H
#define ASYA_GW_JOBPATH_H

#include "job.h"

enum job_action {
    JOB_ACTION_GET = 0, /* /jobs/{id} */
    JOB_ACTION_STREAM,
    JOB_ACTION_ACTIVE,
    JOB_ACTION_PROGRESS,
    JOB_ACTION_HEARTBEAT,
    JOB_ACTION_FINAL,
};

enum jobpath_result {
    JOBPATH_OK = 0,
    JOBPATH_EMPTY_ID,       /* 400 */
    JOBPATH_UNKNOWN_ACTION, /* 404 "not found" */
    JOBPATH_BAD_ID,         /* 404 "Job not found": not a job id the gateway makes */
};

/* rest: the path after "/jobs/".  On JOBPATH_OK and JOBPATH_BAD_ID *action
 * is set; on JOBPATH_OK id holds the job id. */
enum jobpath_result jobpath_parse(const char *rest, char id[JOB_ID_LEN + 1],
                                  enum job_action *action);

/* True for the actions answered to POST (the others are GET/HEAD). */
bool job_action_is_post(enum job_action a);

#endif /* ASYA_GW_JOBPATH_H */
