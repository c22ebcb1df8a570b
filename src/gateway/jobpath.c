#include "jobpath.h"

#include <string.h>

static const char *const action_names[] = {"",         "stream",    "active",
                                           "progress", "heartbeat", "final"};

enum jobpath_result jobpath_parse(const char *rest, char id[JOB_ID_LEN + 1],
                                  enum job_action *action)
{
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *name = slash ? slash + 1 : "";
    if (idlen == 0)
        return JOBPATH_EMPTY_ID;
    bool known = false;
    for (size_t i = 0; i < sizeof action_names / sizeof action_names[0]; i++) {
        if (strcmp(name, action_names[i]) == 0) {
            *action = (enum job_action)i;
            known = true;
            break;
        }
    }
    if (!known || (slash && *name == '\0'))
        return JOBPATH_UNKNOWN_ACTION;
    if (idlen != JOB_ID_LEN)
        return JOBPATH_BAD_ID;
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    return job_id_valid(id) ? JOBPATH_OK : JOBPATH_BAD_ID;
}

bool job_action_is_post(enum job_action a)
{
    return a == JOB_ACTION_PROGRESS || a == JOB_ACTION_HEARTBEAT || a == JOB_ACTION_FINAL;
}
