#include "urlmask.h"

#include <stdio.h>
#include <string.h>

void urlmask_password(const char *url, char *buf, size_t buflen)
{
    /* scheme://user:pass@host -> scheme://user:***@host; the password ends at
     * the last '@' of the authority (it may itself contain '@' when not
     * escaped).  With no '@' there, an unescaped '/', '?' or '#' in the
     * password (or a mistyped scheme) may have cut the authority short: then
     * mask up to the last '@' of the whole URL.  Masking too much is fine;
     * leaking is not. */
    if (buflen == 0)
        return;
    const char *scheme = strstr(url, "://");
    const char *auth = scheme ? scheme + 3 : url;
    const char *end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    if (!at)
        at = strrchr(auth, '@');
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon) {
        snprintf(buf, buflen, "%s", url);
        return;
    }
    snprintf(buf, buflen, "%.*s***%s", (int)(colon + 1 - url), url, at);
}
